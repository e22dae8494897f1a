"""Send a photo and person boxes to `hpsedge serve` (or a Triton server running `hpsedge export triton`'s
repository) and print the people that come back.

    hpsedge serve build/poco-cliff-fp16 &          # in the serve environment (pip install "hpsedge[serve,ort,cli]")
    python examples/serve_client.py examples/astronaut.jpg --boxes 120,20,400,510
    python examples/serve_client.py examples/astronaut.jpg --url http://localhost:8000   # over HTTP

Needs `pip install "hpsedge[client]"` (tritonclient) and Pillow.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from hpsedge.client import HpsedgeClient


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--boxes", nargs="*", default=[], help="x1,y1,x2,y2 per person (default: the whole image)")
    ap.add_argument("--url", default="localhost:8001", help="gRPC host:port, or http://host:port")
    args = ap.parse_args()

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    boxes = [[float(v) for v in b.split(",")] for b in args.boxes] or [[0, 0, rgb.shape[1], rgb.shape[0]]]
    with HpsedgeClient(args.url) as client:
        if not client.ready():
            raise SystemExit(f"no ready hpsedge model at {args.url}")
        for i, person in enumerate(client.predict(rgb, boxes)):
            conf = float(person["confidence"]) if "confidence" in person else float("nan")
            print(f"person {i}: confidence {conf:.2f}, translation {np.round(person['transl'].astype(float), 2).tolist()} m, "
                  f"betas[:3] {np.round(person['betas'][:3].astype(float), 2).tolist()}"
                  + (f", {len(person['joints2d'])} 2D joints" if "joints2d" in person else ""))


if __name__ == "__main__":
    main()
