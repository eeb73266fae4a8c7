# Figures 1–29, Tables 1–8 and the claims verdict (spec §4, §5): one local job per figure / table, each reading
# only the summaries of the experiment groups it shows, so `snakemake fig4` trains and analyses only the
# weight-decay runs. Captions for `snakemake --report` come from sparsecod.plots.inventory.
from sparsecod.plots.inventory import FIGURES, TABLES

for _item in [*FIGURES.values(), *TABLES.values()]:
    _is_figure = _item.name in FIGURES

    rule:
        name:
            _item.name
        localrule: True
        input:
            summaries=group_summaries(_item.groups),
            reference=REFERENCE_FILES,
        output:
            [_reported(p, "Figures" if _is_figure else "Tables", _item)
             for p in (figure_files(_item) if _is_figure else table_files(_item))],
        params:
            name=_item.name,
            caption=_item.caption,
            results=lambda w, output: Path(output[0]).parent.parent,
            reference=lambda w, input: Path(input.reference[0]).parent,
            cli=SPARSECOD,
        log:
            f"{RESULTS}/logs/render/{_item.name}.log",
        resources:
            mem_mb=RES["cpu_mem_mb"],
        conda:
            "../../envs/analysis.yaml"
        shell:
            "{params.cli} render {params.name} --results {params.results} --summary {input.summaries} "
            "--reference {params.reference} > {log} 2>&1"


rule claims:
    """results/claims.{md,csv}: each claim of the paper evaluated on our runs, next to the paper's value."""
    localrule: True
    input:
        summaries=group_summaries(GROUPS),
        reference=REFERENCE_FILES,
    output:
        report(CLAIMS_FILES[0], caption="../report/claims.rst", category="Claims"),
        CLAIMS_FILES[1],
    params:
        results=lambda w, output: Path(output[0]).parent,
        reference=lambda w, input: Path(input.reference[0]).parent,
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/render/claims.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
    conda:
        "../../envs/analysis.yaml"
    shell:
        "{params.cli} render claims --results {params.results} --summary {input.summaries} "
        "--reference {params.reference} > {log} 2>&1"
