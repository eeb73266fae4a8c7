# sparsecod: every run, metric, figure and table of "When Does Sparsity Mitigate the Curse of Depth in LLMs".
#   snakemake --profile slurm all           paper scale on a Slurm GPU cluster (config/config.yaml)
#   snakemake --profile local all           smoke scale on this machine, offline (config/smoke.yaml)
#   snakemake -n all                        plan only; `depth`, `gqa`, ... build one experiment group
# Rules are thin: they call the `sparsecod` CLI (src/sparsecod). Layout: workflow/rules/*.smk.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/collect.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
