#!/usr/bin/env bash
# Build one of RetailModel's images, tag it from git, log in to ECR and push it.
#
#   scripts/build-and-push.sh serving|operator [--no-push]
#
# The tag comes from `retailctl image tag` (main → vYYYYMMDD-sha7, develop → dev-sha7,
# feature/x → feature-x-sha7). Tags are immutable in ECR, so a tag is pushed once; pushing
# triggers ECR's scan on push, which `retailctl ecr findings --wait … --fail-on HIGH` then gates.
#
# Environment: AWS_REGION (required); AWS_ACCOUNT_ID (default: the caller's, from STS);
# GIT_BRANCH and GIT_SHA (default: from git); RETAILCTL (default: retailctl on PATH).
# With GITHUB_OUTPUT set (GitHub Actions), writes tag=… and image=… there.
set -euo pipefail

usage() {
  echo "usage: $0 serving|operator [--no-push]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
component=$1
push=true
if [[ $# -ge 2 ]]; then
  [[ $2 == "--no-push" ]] || usage
  push=false
fi

case "$component" in
  serving) dockerfile=Dockerfile.serving repository=mlops/retail-api ;;
  operator) dockerfile=Dockerfile.operator repository=mlops/retail-operator ;;
  *) usage ;;
esac

cd "$(dirname "$0")/.."
retailctl=${RETAILCTL:-retailctl}
region=${AWS_REGION:?set AWS_REGION, e.g. ap-southeast-1}
branch=${GIT_BRANCH:-$(git rev-parse --abbrev-ref HEAD)}
sha=${GIT_SHA:-$(git rev-parse HEAD)}
account=${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}

registry="${account}.dkr.ecr.${region}.amazonaws.com"
tag=$("$retailctl" image tag --branch "$branch" --sha "$sha")
image="${registry}/${repository}:${tag}"

echo "==> building ${image} from ${dockerfile}"
docker build \
  --file "$dockerfile" \
  --tag "$image" \
  --label "org.opencontainers.image.revision=${sha}" \
  --label "org.opencontainers.image.version=${tag}" \
  .

if [[ $push == true ]]; then
  echo "==> logging in to ${registry}"
  aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry"
  echo "==> pushing ${image}"
  docker push "$image"
fi

if [[ -n ${GITHUB_OUTPUT:-} ]]; then
  {
    echo "tag=${tag}"
    echo "image=${image}"
  } >>"$GITHUB_OUTPUT"
fi
echo "$image"
