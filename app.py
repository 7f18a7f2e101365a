"""UPRM Studio: `python app.py` runs the studio locally (and is the Hugging Face Space entry point)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every weight ships inside a package: never reach a hub

from ui.config import AppConfig, parse_auth  # noqa: E402


def parse_args(argv: list[str] | None = None) -> AppConfig:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="UPRM Studio: find, locate and explain threats in surveillance video, "
        "correct the results and export them as training data. Runs offline on a CPU.",
        epilog="Example: python app.py --port 7860 --db ~/uprm/annotations.sqlite\n"
        "On a Hugging Face Space, set the secret UPRM_AUTH=user:password to require a login.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=env.get("UPRM_HOST", "0.0.0.0" if env.get("SPACE_ID") else "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 on a Space)")
    p.add_argument("--port", type=int, default=int(env.get("UPRM_PORT", env.get("GRADIO_SERVER_PORT", 7860))),
                   help="port (default 7860)")
    p.add_argument("--db", default=env.get("UPRM_DB"), help="SQLite file for annotations "
                   "(default ~/.cache/uprm/studio/annotations.sqlite)")
    p.add_argument("--model", default=env.get("UPRM_MODEL", "small"),
                   help="'small' (CPU default, offline), 'paper' (Video-LLaVA 7B, needs a GPU and local "
                   "weights), or a checkpoint directory written by `python -m uprm train`")
    p.add_argument("--sam2-checkpoint", default=env.get("UPRM_SAM2_CHECKPOINT"),
                   help="SAM 2 checkpoint (.pt) for real SAM 2 masks; without it masks come from the "
                   "bundled person segmentation model")
    p.add_argument("--auth", default=env.get("UPRM_AUTH"),
                   help="require a login: 'user:password[,user2:pw2]' or '@FILE' (one user:password per "
                   "line). Off by default locally; on a public Space set it as the UPRM_AUTH secret")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--max-upload-mb", type=int, default=200, help="largest accepted upload (default 200 MB)")
    p.add_argument("--max-duration-s", type=float, default=600.0,
                   help="longest accepted video in seconds (default 600)")
    a = p.parse_args(argv)
    try:
        auth = parse_auth(a.auth)
    except (ValueError, OSError) as exc:
        p.error(str(exc))
    cfg = AppConfig(host=a.host, port=a.port, model=a.model, auth=auth, share=a.share,
                    sam2_checkpoint=Path(a.sam2_checkpoint) if a.sam2_checkpoint else None,
                    max_upload_mb=a.max_upload_mb, max_duration_s=a.max_duration_s)
    if a.db:
        cfg = AppConfig(**{**cfg.__dict__, "db_path": Path(a.db).expanduser()})
    return cfg


def ensure_space_packages() -> None:
    """On a Hugging Face Space only requirements.txt is installed; the weight-carrying packages need
    `--no-deps` (their declared pins would break the stack), so install them once at start-up there."""
    import importlib.util
    import subprocess

    if not os.environ.get("SPACE_ID") or importlib.util.find_spec("fight_detection"):
        return
    req = Path(__file__).with_name("requirements-nodeps.txt")
    print(f"installing {req.name} with --no-deps (first start of this Space)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(req)], check=False)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    ensure_space_packages()
    from uprm import capabilities
    from ui.layout import build_demo, launch_kwargs

    print(capabilities.report(capabilities.check(cfg.sam2_checkpoint)), flush=True)
    demo = build_demo(cfg)
    demo.queue(default_concurrency_limit=2).launch(**launch_kwargs(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
