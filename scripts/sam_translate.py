"""Translate template.yaml offline with aws-sam-translator, so that cfn-lint
sees the CloudFormation that SAM would deploy (SAM-level typos such as a wrong
runtime, architecture, event property or policy template name fail here).

Usage: sam_translate.py template.yaml OUT.json
"""
import json
import os
import sys

import yaml  # shipped with cfn-lint's dependencies
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policy by name, so nothing to look up."""

    def load(self):
        return {}


def translate(src, code_uri="s3://morag-lint-artifacts/code.zip"):
    """The CloudFormation that SAM would deploy for `src`, with every
    function's code at `code_uri` (a placeholder object)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(src) as f:
        template = yaml_parse(f.read())
    # Local CodeUri paths are packaged by `sam build`; the translator wants S3.
    globals_fn = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        globals_fn["CodeUri"] = code_uri
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            props = resource.setdefault("Properties", {})
            if "CodeUri" in props:
                props["CodeUri"] = code_uri
    return transform(template, {}, NoManagedPolicies())


def main(src, dst):
    out = translate(src)
    with open(dst, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    print(f"translated {src} -> {dst}: {len(out['Resources'])} resources")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
