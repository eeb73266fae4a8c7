# Trained model + held-out shard -> layer metrics M3-M11 (protocol §2). Paper scale: one restartable job per metric
# family; small scales (analysis.one_job_per_run) compute a run's whole suite in one process.
# The same job also analyses the run's untrained control (step-0 weights rebuilt from its seed, same windows) into
# analysis/init/<metric>.json (analysis.init_control; families of metrics.registry.INIT_METRICS): no extra process
# start-up, and collect reads those files beside the trained ones.

if config["analysis"].get("one_job_per_run"):

    rule analyze_run:
        input:
            model=f"{RESULTS}/runs/{{run}}/model/config.json",
            data=f"{DATA}/meta.json",
        output:
            f"{RESULTS}/runs/{{run}}/analysis/suite.json",
        params:
            run_dir=lambda w, input: str(Path(input.model).parent.parent),
            data=lambda w, input: str(Path(input.data).parent),
            cli=SPARSECOD,
            metrics=lambda w: ",".join(REG.analyses(w.run)),
            settings=ANALYSIS_SETTINGS,
        log:
            f"{RESULTS}/logs/analyze/{{run}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/analyze/{{run}}.tsv"
        threads: RES.get("threads", 1)
        resources:
            gpu=RES["analysis_gpus"],
            runtime=RES["analysis_runtime"],
            mem_mb=RES["train_mem_mb"],
        conda:
            "../envs/train.yaml"
        shell:
            "OMP_NUM_THREADS={threads} {params.cli} analyze {params.run_dir} --metric {params.metrics} --heldout {params.data}"
            " --settings-json {params.settings:q} --suite-out {output} > {log} 2>&1"

else:

    rule analyze:
        input:
            model=f"{RESULTS}/runs/{{run}}/model/config.json",
            data=f"{DATA}/meta.json",
        output:
            f"{RESULTS}/runs/{{run}}/analysis/{{metric}}.json",
        params:
            run_dir=lambda w, input: str(Path(input.model).parent.parent),
            data=lambda w, input: str(Path(input.data).parent),
            cli=SPARSECOD,
            settings=ANALYSIS_SETTINGS,
        log:
            f"{RESULTS}/logs/analyze/{{run}}.{{metric}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/analyze/{{run}}.{{metric}}.tsv"
        threads: RES.get("threads", 1)
        resources:
            gpu=RES["analysis_gpus"],
            runtime=RES["analysis_runtime"],
            mem_mb=RES["train_mem_mb"],
        conda:
            "../envs/train.yaml"
        shell:
            "OMP_NUM_THREADS={threads} {params.cli} analyze {params.run_dir} --metric {wildcards.metric} --heldout {params.data}"
            " --settings-json {params.settings:q} > {log} 2>&1"
