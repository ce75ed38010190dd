"""Speed of the Python API against bitnet-cli, side by side in one run (issue 13's benchmarks):
the time of from_pretrained on a GGUF; single-stream generation through BitNetModel.generate and
through bitnet-cli (same prompt, same token count, greedy); the aggregate tokens/s of
batch_generate at several batch sizes against sequential generate calls over the same prompts.
Medians of --repetitions runs. Meant for a model that does not stop early (a dummy checkpoint
rarely emits its end-of-text token; the API has no ignore-eos switch, so counts are checked).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitnet import BitNetModel  # noqa: E402
from bitnet.common import engine_tool  # noqa: E402

PROMPTS = ["Create a new", "Return the value of", "Raise an error when the file", "Close the", "If the",
           "The default is", "Convert the string to a list of", "Open"]


def _cli_tg(model: Path, prompt: str, n: int, threads: int) -> float:
    """bitnet-cli's generation speed in the API's measure: the tokens after the first over the
    time after the first. Its own tokens/s divides all n tokens by the time of n - 1 forward passes
    (the first token comes from the prompt's pass), which would favour it by n / (n - 1)."""
    r = subprocess.run([str(engine_tool("bitnet-cli")), "-m", str(model), "-p", prompt, "-n", str(n),
                        "--temp", "0", "--ignore-eos", "-t", str(threads)], capture_output=True, text=True,
                       check=True)
    m = re.search(r"generation:\s+(\d+) tokens? in ([0-9.]+) s", r.stderr)
    if not m or int(m.group(1)) < 2:
        raise click.ClickException(f"no usable generation line in bitnet-cli's output:\n{r.stderr[-800:]}")
    return (int(m.group(1)) - 1) / float(m.group(2))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--n-gen", default=64, show_default=True, help="Tokens per generation.")
@click.option("-t", "--threads", default=2, show_default=True)
@click.option("-r", "--repetitions", default=3, show_default=True)
@click.option("--batch-sizes", default="1,4,8", show_default=True)
def main(model_path: Path, n_gen: int, threads: int, repetitions: int, batch_sizes: str) -> None:
    t0 = time.perf_counter()
    model = BitNetModel.from_pretrained(str(model_path), n_threads=threads, context_length=512)
    click.echo(f"from_pretrained: {time.perf_counter() - t0:.3f} s")
    model.generate("warm", max_new_tokens=4)
    api, cli = [], []
    for _ in range(repetitions):  # interleaved, so a change in machine load hits both alike
        # From the first piece on: the prompt's forward pass, which yields the first token, is not
        # generation; _cli_tg counts bitnet-cli alike.
        t = None
        for _ in model.generate(PROMPTS[0], max_new_tokens=n_gen, stream=True):
            t = t or time.perf_counter()
        api.append((model.last_generated_tokens - 1) / (time.perf_counter() - t))
        cli.append(_cli_tg(model_path, PROMPTS[0], n_gen, threads))
    a, c = statistics.median(api), statistics.median(cli)
    click.echo(f"single stream, {n_gen} tokens after the first: API {a:.2f} tok/s, bitnet-cli {c:.2f} tok/s: "
               f"API/cli {a / c:.3f}")
    seq, outs, toks = [], [], 0
    for _ in range(repetitions):
        outs, toks = [], 0
        t = time.perf_counter()
        for p in PROMPTS:
            outs.append(model.generate(p, max_new_tokens=n_gen))
            toks += model.last_generated_tokens
        seq.append(time.perf_counter() - t)
    base = toks / statistics.median(seq)
    click.echo(f"{len(PROMPTS)} sequential generate calls: {toks} tokens, {base:.2f} tok/s")
    for b in (int(x) for x in batch_sizes.split(",")):
        times = []
        for _ in range(repetitions):
            t = time.perf_counter()
            got = model.batch_generate(PROMPTS, max_new_tokens=n_gen, batch_size=b)
            times.append(time.perf_counter() - t)
            if got != outs:
                raise click.ClickException(f"batch_generate at batch size {b} differs from generate")
        rate = toks / statistics.median(times)
        click.echo(f"batch_generate batch_size {b}: {rate:.2f} tok/s ({rate / base:.2f}x sequential)")
    model.close()


if __name__ == "__main__":
    main()
