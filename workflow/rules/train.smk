# Run config -> trained model (protocol §1.5, §3). Checkpoints live in <run>/checkpoints/, which is not a declared
# output: Snakemake never deletes it, so a failed, killed or requeued job resumes from checkpoints/last.ckpt.


localrules:
    run_config,
    select_lr,


rule run_config:
    """results/runs/<run>/run.yaml: the registry's RunConfig, LR from the sweep winner, vocab from the shards."""
    input:
        data=f"{DATA}/meta.json",
        sweep=lambda w: [str(REG.sweep_file(run_spec(w.run).lr_sweep))] if run_spec(w.run).lr_sweep else [],
    output:
        f"{RESULTS}/runs/{{run}}/run.yaml",
    params:
        # what determines the weights (model, training settings, LR sweep): a change of a group's labels,
        # analyses or evaluation tasks re-runs those jobs, never the training
        spec=lambda w: repr(run_spec(w.run).training_key),
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/run_config/{{run}}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} run-config {wildcards.run} --out {output} --log {log}"


rule train:
    input:
        config=f"{RESULTS}/runs/{{run}}/run.yaml",
        data=f"{DATA}/meta.json",
    output:
        summary=f"{RESULTS}/runs/{{run}}/summary.json",
        model=f"{RESULTS}/runs/{{run}}/model/config.json",
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    threads: RES.get("threads", 1)
    resources:
        gpu=lambda w: train_resources(w)["gpu"],
        nodes=lambda w: train_resources(w)["nodes"],
        tasks_per_node=lambda w: train_resources(w)["tasks_per_node"],
        runtime=lambda w: train_resources(w)["runtime"],
        mem_mb=lambda w: train_resources(w)["mem_mb"],
        # Slurm only: SIGURG to the job step 300 s before the time limit, and a requeue-able job. The training process
        # then saves checkpoints/hpc_ckpt_<n>.ckpt and runs `scontrol requeue`; the job starts again under the same
        # id and resumes from that checkpoint (docs/slurm.md). URG, not USR1 (kills the Snakemake jobstep wrapper);
        # without "B:" (that would signal only the batch shell, never the command).
        slurm_extra="--signal=URG@300 --requeue",
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} train --config {input.config} --out {params.out} > {log} 2>&1"


rule select_lr:
    """results/sweeps/<sweep>.json: the grid point with the lowest held-out loss (protocol Q1)."""
    input:
        lambda w: [f"{RESULTS}/runs/{p}/summary.json" for p in REG.sweeps[w.sweep].points],
    output:
        f"{RESULTS}/sweeps/{{sweep}}.json",
    params:
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/sweeps/{{sweep}}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} select-lr {wildcards.sweep} {input} --out {output} --log {log}"
