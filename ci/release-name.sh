#!/bin/sh
# The one place the release name is made, for every job of .gitlab-ci.yml: SERVICE_NAME@VERSION, where
# VERSION is the commit's first 8 hex digits (GitLab's CI_COMMIT_SHORT_SHA; in a checkout without CI
# variables, `git rev-parse HEAD`, which observability.config matches when SENTRY_RELEASE is unset).
# Never the tag: a commit is one image and one Sentry release, deployed to staging from the default
# branch and later to production from its tag. A second name for the same commit would be a release
# without commits (set-commits starts from the previous release with commits: the staging one, at the
# same commit) and an image tag baked with two different releases.
# Prints the name; fails with one line saying why when it cannot.
set -eu

fail() {
    echo "release-name: $*" >&2
    exit 1
}

[ -n "${SERVICE_NAME:-}" ] || fail "SERVICE_NAME is not set: the service's name, e.g. payments-worker"
version="${CI_COMMIT_SHORT_SHA:-}"
if [ -z "$version" ]; then
    sha="$(git rev-parse HEAD)" || fail "no CI_COMMIT_SHORT_SHA, and not in a git checkout"
    version="$(printf '%s' "$sha" | cut -c1-8)"
fi
# Sentry refuses release names with slashes, backslashes or whitespace; say so here, not in a 400 later.
case "$SERVICE_NAME@$version" in
    */* | *\\* | *[[:space:]]*) fail "'$SERVICE_NAME@$version' has a slash or whitespace: Sentry refuses it" ;;
esac
printf '%s@%s\n' "$SERVICE_NAME" "$version"
