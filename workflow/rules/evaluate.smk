# Trained model -> zero-shot downstream accuracy with the stock lm-eval tasks (protocol M12).


rule evaluate:
    input:
        model=f"{RESULTS}/runs/{{run}}/model/config.json",
    output:
        harness=f"{RESULTS}/runs/{{run}}/eval/lm_eval.json",
        headline=f"{RESULTS}/runs/{{run}}/eval/downstream.csv",
    params:
        run_dir=lambda w, input: str(Path(input.model).parent.parent),
        cli=SPARSECOD,
        tasks=lambda w: ",".join(REG.evaluation_tasks(w.run)),  # the group's tasks (protocol E1 all four, E6 two)
        limit=f"--limit {config['evaluation']['limit']}" if config["evaluation"].get("limit") else "",
        data=f"--eval-data {config['evaluation']['data_dir']}" if config["evaluation"].get("data_dir") else "",
        batch=config["evaluation"].get("batch_size", 32),
        max_length=(
            f"--max-length {config['evaluation']['max_length']}" if config["evaluation"].get("max_length") else ""
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{run}}.tsv"
    threads: RES.get("threads", 1)
    resources:
        gpu=RES["analysis_gpus"],
        runtime=RES["analysis_runtime"],
        mem_mb=RES["train_mem_mb"],
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} evaluate {params.run_dir} --tasks {params.tasks} {params.limit} {params.data}"
        " --batch-size {params.batch} {params.max_length} --no-progress > {log} 2>&1"
