# Trained model -> zero-shot downstream accuracy with the stock lm-eval tasks (spec M12).

EVAL = config["evaluation"]


rule evaluate:
    input:
        model=f"{RESULTS}/runs/{{run}}/model/config.json",
    output:
        f"{RESULTS}/runs/{{run}}/eval/lm_eval.json",
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
    threads: 2
    resources:
        gpu=RES["analysis_gpus"],
        runtime=RES["analysis_runtime"],
        mem_mb=RES["train_mem_mb"],
    conda:
        "../../envs/train.yaml"
    shell:
        "{SPARSECOD} evaluate {params.run_dir} --tasks {params.tasks} {params.limit} {params.data}"
        " --batch-size {params.batch} > {log} 2>&1"
