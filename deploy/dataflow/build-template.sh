#!/usr/bin/env bash
# Builds newswatch's Dataflow Flex Template: the image (launcher and SDK worker in one) pushed to
# IMAGE, and the template spec written to TEMPLATE. Called by `make dataflow-template`:
#   make dataflow-template IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/newswatch:TAG TEMPLATE=gs://BUCKET/templates/newswatch.json
set -euo pipefail

: "${IMAGE:?set IMAGE to an Artifact Registry image, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/newswatch:0.1.0}"
: "${TEMPLATE:?set TEMPLATE to the template spec to write, e.g. gs://BUCKET/templates/newswatch.json}"
for tool in docker gcloud; do
  command -v "$tool" >/dev/null 2>&1 || { echo "dataflow-template: needs $tool on PATH (see deploy/dataflow/README.md)" >&2; exit 1; }
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
# BuildKit reads deploy/dataflow/Dockerfile.dockerignore, so .venv/ and outputs stay out of the context.
DOCKER_BUILDKIT=1 docker build -f "$root/deploy/dataflow/Dockerfile" -t "$IMAGE" "$root"
docker push "$IMAGE"
gcloud dataflow flex-template build "$TEMPLATE" \
  --image "$IMAGE" --sdk-language PYTHON --metadata-file "$root/deploy/dataflow/metadata.json"
echo "template: $TEMPLATE (image $IMAGE); run it as deploy/dataflow/README.md shows"
