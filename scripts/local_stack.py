"""Deploy template.yaml on a local emulator, as a CloudFormation stack.

The template is translated offline with aws-sam-translator (as sam_translate.py
does for linting), every function's CodeUri pointing at a placeholder object,
and created as a stack on moto server's CloudFormation. The table, bucket,
queues (with their redrive policies), functions (with their environment) and
event source mappings then exist exactly as the template says; `morag dev`
and the integration tests read them back from this script's JSON answer:

    {"stack": NAME, "outputs": {OutputKey: value},
     "functions": {LogicalId: {"env": {NAME: value},
                               "events": [{"queue_url", "batch_size",
                                           "function_response_types"}],
                               "routes": [{"method", "path"}],
                               "memory_mb": MemorySize}}}

moto does not apply a table's TimeToLiveSpecification from a stack, so this
script applies it with UpdateTimeToLive, as the template says. The event
source mappings are read, then disabled on the emulator (moto would invoke the
placeholder functions itself); `morag dev` polls the queues in their place.

Usage: local_stack.py --endpoint URL --stack NAME [--param Key=Value ...]
"""
import argparse
import hashlib
import io
import json
import os
import sys
import time
import zipfile

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sam_translate import translate  # noqa: E402

ARTIFACTS = "morag-local-artifacts"
CODE_KEY = "code.zip"


def translated(template_path):
    """The translated template, cached by the source's hash."""
    with open(template_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache_dir = os.path.join(ROOT, "target", "local-stack")
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, f"template-{digest}.json")
    if not os.path.exists(cache):
        out = translate(template_path, f"s3://{ARTIFACTS}/{CODE_KEY}")
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, cache)
    with open(cache) as f:
        return json.load(f)


def http_routes(template_path):
    """Each function's HttpApi routes, from the SAM template itself:
    {LogicalId: [{"method", "path"}]}."""
    from samtranslator.yaml_helper import yaml_parse
    with open(template_path) as f:
        source = yaml_parse(f.read())
    routes = {}
    for logical, spec in source.get("Resources", {}).items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        for event in spec.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                props = event["Properties"]
                routes.setdefault(logical, []).append({"method": props["Method"].upper(), "path": props["Path"]})
    return routes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--param", action="append", default=[], help="Key=Value template parameter")
    ap.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    args = ap.parse_args()

    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    s3 = boto3.client("s3", **kw)
    cfn = boto3.client("cloudformation", **kw)
    lam = boto3.client("lambda", **kw)
    ddb = boto3.client("dynamodb", **kw)

    template = translated(args.template)
    try:
        s3.head_object(Bucket=ARTIFACTS, Key=CODE_KEY)
    except Exception:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("bootstrap", "#!/bin/sh\n# placeholder: morag dev runs the functions itself\n")
        try:
            s3.create_bucket(Bucket=ARTIFACTS)
        except Exception:
            pass
        s3.put_object(Bucket=ARTIFACTS, Key=CODE_KEY, Body=buf.getvalue())

    params = []
    for p in args.param:
        key, _, value = p.partition("=")
        params.append({"ParameterKey": key, "ParameterValue": value})
    cfn.create_stack(StackName=args.stack, TemplateBody=json.dumps(template), Parameters=params,
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.time() + 120
    while True:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.time() > deadline:
            sys.exit(f"stack {args.stack} still {stack['StackStatus']} after 120 s")
        time.sleep(0.05)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=args.stack)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if e.get("ResourceStatusReason")]
        sys.exit(f"stack {args.stack} ended {stack['StackStatus']}: {reasons}")

    resources = {r["LogicalResourceId"]: r for r in
                 cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"]}
    functions = {}
    routes = http_routes(args.template)
    for logical, spec in template["Resources"].items():
        kind = spec["Type"]
        physical = resources.get(logical, {}).get("PhysicalResourceId")
        if kind == "AWS::DynamoDB::Table":
            ttl = spec["Properties"].get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(TableName=physical, TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"], "Enabled": True})
        elif kind == "AWS::Lambda::Function":
            conf = lam.get_function_configuration(FunctionName=physical)
            env = {k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()}
            events = []
            for m in lam.list_event_source_mappings(FunctionName=physical)["EventSourceMappings"]:
                # Disabled on the emulator: moto would otherwise invoke the
                # placeholder function itself on every message sent (and need
                # Docker). `morag dev` runs local copies of these mappings.
                lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
                queue_name = m["EventSourceArn"].rsplit(":", 1)[-1]
                # the queue's URL as the stack (and its outputs) spell it
                queue_url = next(r["PhysicalResourceId"] for r in resources.values()
                                 if r["ResourceType"] == "AWS::SQS::Queue"
                                 and r["PhysicalResourceId"].endswith("/" + queue_name))
                events.append({
                    "queue_url": queue_url,
                    "batch_size": m.get("BatchSize", 10),
                    "function_response_types": m.get("FunctionResponseTypes", []),
                })
            functions[logical] = {"env": env, "events": events, "routes": routes.get(logical, []),
                                  "memory_mb": conf.get("MemorySize", 128)}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    json.dump({"stack": args.stack, "outputs": outputs, "functions": functions}, sys.stdout)


if __name__ == "__main__":
    main()
