# Trained model -> zero-shot downstream accuracy with the stock lm-eval tasks (spec M12).

EVAL = config["evaluation"]


rule evaluate:
    input:
        model=f"{RESULTS}/runs/{{run}}/model/config.json",
    output:
        harness=f"{RESULTS}/runs/{{run}}/eval/lm_eval.json",
        headline=f"{RESULTS}/runs/{{run}}/eval/downstream.csv",
    params:
        run_dir=f"{RESULTS}/runs/{{run}}",
        tasks=",".join(EVAL["tasks"]),
        limit=f"--limit {EVAL['limit']}" if EVAL.get("limit") else "",
        data=f"--eval-data {EVAL['data_dir']}" if EVAL.get("data_dir") else "",
        batch=EVAL.get("batch_size", 32),
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
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {SPARSECOD} evaluate {params.run_dir} --tasks {params.tasks} {params.limit} {params.data}"
        " --batch-size {params.batch} --no-progress > {log} 2>&1"
