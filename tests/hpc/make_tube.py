"""Write one large synthetic tube (and its control) for memory and time measurements.

    python tests/hpc/make_tube.py /tmp/big 1000000            # P01-R1 with 1e6 events
    python tests/hpc/make_tube.py /tmp/big 10000000 --sample P03-R1

The stained tube is the demo sample's TubeSpec drawn with N events; the control tube is the
same sample's unstained spec with N * 2/5 events (the demo's 50,000 : 20,000 ratio). Both are
seeded, so a rerun writes the same bytes. Generated data belongs under /tmp, never in the
repository.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np

from antigen_profile.simulate import demo_tube_spec, simulate_events, write_fcs


def write_tube(name: str, n_events: int, out: Path, stem: str) -> Path:
    spec, _ = demo_tube_spec(name)
    rng = np.random.default_rng(zlib.crc32(f"{name}:{n_events}".encode()))
    events, _truth = simulate_events(spec, n_events, rng)
    return write_fcs(
        out / f"{stem}.fcs",
        events,
        [c.name for c in spec.channels],
        [c.label for c in spec.channels],
        spec.keywords(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the two FCS files")
    parser.add_argument("events", type=int, help="events in the stained tube")
    parser.add_argument("--sample", default="P01-R1", help="demo sample whose spec is drawn")
    args = parser.parse_args()
    stem = f"{args.sample}-{args.events}"
    print(write_tube(args.sample, args.events, args.out, stem))
    control_events = max(args.events * 2 // 5, 1)
    print(write_tube(f"{args.sample}_control", control_events, args.out, f"{stem}_control"))


if __name__ == "__main__":
    main()
