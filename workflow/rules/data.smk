# Corpus -> token shards shared by every run (protocol §1.1, §1.6).


rule tokenize:
    output:
        meta=f"{DATA}/meta.json",
    params:
        data=json.dumps({k: v for k, v in config["data"].items() if k != "id"}, sort_keys=True),
        out=lambda w, output: str(Path(output.meta).parent),
        cli=SPARSECOD,
    log:
        f"{RESULTS}/logs/tokenize.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenize.tsv"
    threads: config["data"].get("workers", 1)
    resources:
        mem_mb=RES["cpu_mem_mb"],
        runtime=24 * 60,
    conda:
        "../envs/analysis.yaml"
    shell:
        "{params.cli} tokenize --data-json {params.data:q} --out {params.out} --workers {threads} > {log} 2>&1"
