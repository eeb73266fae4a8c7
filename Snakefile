# sparsecod: every run, metric, figure and table of "When Does Sparsity Mitigate the Curse of Depth in LLMs".
#   snakemake --profile slurm all           paper scale on a Slurm GPU cluster (config/config.yaml)
#   snakemake --profile local all           smoke scale on this machine, offline (config/smoke.yaml)
#   snakemake -n all                        plan only; `depth`, `gqa`, ... build one experiment group
#   snakemake fig5 / table3 / claims        one figure, table or the claims verdict and only what it needs
#   snakemake lns figX1 tableX1 claimsX     beyond the paper: E1 with LayerNorm Scaling (group lns)
#   snakemake external                      every checkpoint of config `external:` analysed (layer metrics, figure)
#   snakemake --report results/report.html  every figure and table with its caption
# Rules are thin: they call the `sparsecod` CLI (src/sparsecod). Layout: workflow/rules/*.smk.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/external.smk"


rule all:
    input:
        all_outputs(),
    default_target: True


rule unknown_target:
    """A bare-word target that is no rule (e.g. a misspelt group or figure): fails naming the config (common.smk)."""
    input:
        no_such_target,
    output:
        "{target}",
    wildcard_constraints:
        target=r"[A-Za-z][A-Za-z0-9_-]*",
