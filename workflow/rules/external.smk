# External checkpoints (config `external: {name: path}`, issue 19): transformers LlamaForCausalLM directories,
# imported into our model and analysed with the paper's layer metrics, one figure each; `snakemake external`.
# Layout of <results>/external/<name>/ (model/, heldout/, analysis/, figures/): sparsecod.external.
rule external_heldout:
    """Held-out text of `data:` tokenized with the checkpoint's own tokenizer.json (train split: one token)."""
    input:
        tokenizer=lambda w: str(EXTERNAL[w.name] / "tokenizer.json"),
    output:
        meta=f"{EXT}/{{name}}/heldout/meta.json",
    wildcard_constraints:
        name="|".join(map(re.escape, EXTERNAL)) or "(?!)",
    params:
        data=lambda w: json.dumps(heldout_config(config["data"], EXTERNAL[w.name] / "tokenizer.json"), sort_keys=True),
        out=lambda w, output: str(Path(output.meta).parent),
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/external/{{name}}.heldout.log",
    threads: config["data"].get("workers", 1)
    resources:
        mem_mb=RES["cpu_mem_mb"],
        runtime=24 * 60,
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} tokenize --data-json {params.data:q} --out {params.out} --workers {threads} --no-progress"
        " > {log} 2>&1"


rule analyze_external:
    """Import the checkpoint, compute EXTERNAL_ANALYSES on its held-out text, draw figures/layers.{pdf,png}."""
    input:
        checkpoint=lambda w: str(EXTERNAL[w.name] / "config.json"),
        heldout=f"{EXT}/{{name}}/heldout/meta.json",
    output:
        suite=f"{EXT}/{{name}}/analysis/suite.json",
        png=report(
            f"{EXT}/{{name}}/figures/layers.png",
            caption="../report/external.rst",
            category="External models",
            subcategory="{name}",
        ),
        pdf=f"{EXT}/{{name}}/figures/layers.pdf",
    wildcard_constraints:
        name="|".join(map(re.escape, EXTERNAL)) or "(?!)",
    params:
        src=lambda w: str(EXTERNAL[w.name]),
        out=lambda w, output: str(Path(output.suite).parent.parent),
        heldout=lambda w, input: str(Path(input.heldout).parent),
        metrics=",".join(EXTERNAL_ANALYSES),
        settings=ANALYSIS_SETTINGS,
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/external/{{name}}.analyze.log",
    threads: RES.get("threads", 1)
    resources:
        gpu=RES["analysis_gpus"],
        runtime=RES["analysis_runtime"],
        mem_mb=RES["train_mem_mb"],
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} analyze {params.src} --out {params.out} --heldout {params.heldout}"
        " --metric {params.metrics} --settings-json {params.settings:q} --figures --suite-out {output.suite}"
        " --no-progress > {log} 2>&1"


rule external:
    """Every checkpoint of `external:` analysed and drawn."""
    input:
        external_outputs(),
