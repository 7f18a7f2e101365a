"""Rebuild assets/sample_vtest_30s.mp4 from OpenCV's vtest.avi (see assets/README.md for provenance).

    python assets/make_sample.py [--src ../shared/media/vtest.avi] [--seconds 30]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av  # before anything that may import decord

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from uprm.video import write_h264  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=str(ROOT.parent / "shared" / "media" / "vtest.avi"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", default=str(ROOT / "assets" / "sample_vtest_30s.mp4"))
    args = parser.parse_args()
    with av.open(args.src) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        n = int(round(args.seconds * fps))

        def frames():
            for i, frame in enumerate(container.decode(stream)):
                if i >= n:
                    break
                yield frame.to_ndarray(format="rgb24")

        out = write_h264(frames(), args.out, fps=fps, crf=26)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {n} frames at {fps:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
