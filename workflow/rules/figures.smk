# Figures 1–29, Tables 1–8 and the claims verdict (protocol §4, §5): one local job each, reading only the summaries
# of the experiment groups it shows, so `snakemake fig4` trains and analyses only the weight-decay runs.
# Output files and report captions come from sparsecod.plots.inventory (ITEMS, imported in common.smk).

for _item in ITEMS.values():

    rule:
        name:
            _item.name
        localrule: True
        input:
            summaries=group_summaries(_item.groups),
            reference=REFERENCE_FILES,
        output:
            reported_files(_item),
        params:
            name=_item.name,
            caption=_item.caption,
            results=lambda w, input: Path(input.summaries[0]).parent.parent,
            reference=lambda w, input: Path(input.reference[0]).parent,
            cli=SPARSECOD,
        log:
            f"{RESULTS}/logs/render/{_item.name}.log",
        resources:
            mem_mb=RES["cpu_mem_mb"],
        conda:
            "../envs/analysis.yaml"
        shell:
            "{params.cli} render {params.name} --results {params.results} --summary {input.summaries} "
            "--reference {params.reference} > {log} 2>&1"
