#!/usr/bin/env sh
# Installs this checkout into the active conda environment, in editable mode, without
# touching the dependencies environment.yml already brought in (the workflow reads its
# schemas, templates and config from the checkout, so it must be installed from it).
# `snakemake --sdm conda` runs this inside the environment it has just built from
# environment.yml, from its working directory, which is this repository. By hand:
#   conda activate antigen-profile && sh environment.post-deploy.sh   (from the repository)
set -eu
if [ ! -f pyproject.toml ] || [ ! -d src/antigen_profile ]; then
    echo "environment.post-deploy.sh: run from the antigen-profile repository (now in $(pwd))" >&2
    exit 1
fi
python -m pip install --no-deps -e .
