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
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/collect/{{group}}.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} collect --group {wildcards.group} --out {output} --log {log}"


rule collect:
    """results/summary.parquet: the group tables in one (DESIGN data flow)."""
    input:
        expand(f"{RESULTS}/summary/{{group}}.parquet", group=GROUPS),
    output:
        f"{RESULTS}/summary.parquet",
    params:
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/collect.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} merge-summaries {input} --out {output} --log {log}"


for _group in GROUPS:

    rule:
        name:
            _group
        input:
            group_outputs(_group),
