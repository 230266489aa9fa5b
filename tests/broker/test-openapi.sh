#!/bin/bash
# Every route atrium-broker registers is documented in docs/api/openapi.yaml,
# and the document lists no route the broker does not serve.
# usage: test-openapi.sh ATRIUM-BROKER OPENAPI.YAML
set -euo pipefail
broker=${1:?usage: test-openapi.sh ATRIUM-BROKER OPENAPI.YAML}
spec=${2:?}
tmp=$(mktemp -d /tmp/atrium-openapi-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$broker" --list-routes >"$tmp/routes"
[[ -s $tmp/routes ]] || { echo "FAIL --list-routes printed nothing"; exit 1; }
python3 - "$spec" >"$tmp/documented" <<'PY'
import sys, yaml

class Strict(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise SystemExit("FAIL duplicate keys in %s: %s" % (sys.argv[1], sorted(map(str, dup))))
    return yaml.SafeLoader.construct_mapping(loader, node, deep)

Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
doc = yaml.load(open(sys.argv[1]), Loader=Strict)
assert str(doc.get("openapi", "")).startswith("3."), "not an OpenAPI 3 document"
methods = {"get", "put", "post", "delete", "patch", "head", "options"}
rows = sorted((p, m.upper()) for p, ops in doc["paths"].items() for m in ops if m in methods)
for p, m in rows:
    print(m, p)
PY
sort "$tmp/routes" >"$tmp/a"
sort "$tmp/documented" >"$tmp/b"
if ! diff -u "$tmp/a" "$tmp/b" >"$tmp/diff"; then
    echo "FAIL routes (-) and docs/api/openapi.yaml (+) disagree:"
    cat "$tmp/diff"
    exit 1
fi
echo "ok   $(wc -l <"$tmp/a") routes, all documented, none extra"
