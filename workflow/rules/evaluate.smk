# Trained model -> zero-shot downstream accuracy with the stock lm-eval tasks and the embedded one (protocol M12).

EVAL_SET = f"{DATA}/eval/{EMBEDDED_TASK}/{EMBEDDED_YAML}"
_LIMIT = config["evaluation"].get("embedded_limit")
EMBEDDED_ARGS = f"--task-dir {Path(EVAL_SET).parent}" + (f" --embedded-limit {_LIMIT}" if _LIMIT else "")


rule eval_set:
    output:
        task=EVAL_SET,
    params:
        out=lambda w, output: str(Path(output.task).parent),
        fraction=DataConfig.from_dict(config["data"]).heldout_fraction,  # the items come from held-out documents
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/eval_set.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_set.tsv"
    threads: config["data"].get("workers", 1)
    resources:
        mem_mb=RES["cpu_mem_mb"],
        runtime=60,
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} eval-set --out {params.out} --heldout-fraction {params.fraction} --workers {threads} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{RESULTS}/runs/{{run}}/model/config.json",
        task=lambda w: EVAL_SET if EMBEDDED_TASK in eval_tasks(w.run) else [],
    output:
        harness=f"{RESULTS}/runs/{{run}}/eval/lm_eval.json",
        headline=f"{RESULTS}/runs/{{run}}/eval/downstream.csv",
    params:
        run_dir=lambda w, input: str(Path(input.model).parent.parent),
        cli=SPARSECOD,
        tasks=lambda w: ",".join(eval_tasks(w.run)),  # the group's tasks (protocol E1 all four, E6 two)
        limit=f"--limit {config['evaluation']['limit']}" if config["evaluation"].get("limit") else "",
        embedded=lambda w: EMBEDDED_ARGS if EMBEDDED_TASK in eval_tasks(w.run) else "",
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
        "OMP_NUM_THREADS={threads} {params.cli} evaluate {params.run_dir} --tasks {params.tasks} {params.limit} {params.data} {params.embedded}"
        " --batch-size {params.batch} {params.max_length} --no-progress > {log} 2>&1"
