localrules:
    collect,
    collect_group,


# Every run's summary, analysis and evaluation -> one tidy table per experiment group (what that group's figures
# and tables read, so `snakemake fig4` needs only the weight-decay runs) and one for everything; group targets.


rule collect_group:
    """results/summary/<group>.parquet: the tidy table of one experiment group's runs (aliases included)."""
    input:
        lambda w: group_outputs(w.group),
    output:
        f"{RESULTS}/summary/{{group}}.parquet",
    params:
        # relabelled runs re-collect (sorted keys: reordering the config re-runs nothing)
        labels=lambda w: json.dumps({r: REG.spec(r).labels for r in REG.group_runs[w.group]}, sort_keys=True),
    log:
        f"{RESULTS}/logs/collect/{{group}}.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    run:
        from sparsecod.collect import collect

        collect(REG, Path(output[0]), log=Path(log[0]), groups=[wildcards.group])


rule collect:
    """results/summary.parquet: the group tables in one (DESIGN data flow)."""
    input:
        expand(f"{RESULTS}/summary/{{group}}.parquet", group=GROUPS),
    output:
        f"{RESULTS}/summary.parquet",
    log:
        f"{RESULTS}/logs/collect.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    run:
        from sparsecod.collect import merge_summaries

        merge_summaries([Path(p) for p in input], Path(output[0]), log=Path(log[0]))


for _group in GROUPS:

    rule:
        name:
            _group
        input:
            group_outputs(_group),
