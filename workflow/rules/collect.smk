localrules:
    collect,


# Every run's summary, analysis and evaluation -> one tidy table (results/summary.parquet); group targets.


rule collect:
    input:
        sorted({f for r in REG.all_ids() for f in run_outputs(r)}),
    output:
        f"{RESULTS}/summary.parquet",
    log:
        f"{RESULTS}/logs/collect.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    run:
        from sparsecod.collect import collect

        collect(REG, Path(output[0]), log=Path(log[0]))


for _group in GROUPS:

    rule:
        name:
            _group
        input:
            group_outputs(_group),
