//! Least privilege, checked on what CloudFormation would get: the offline
//! SAM translation of `template.yaml` (the same translator `make test` lints
//! with). No `*` resource, no wildcard action, no managed policy (SAM's
//! AWSLambdaBasicExecutionRole and AWSLambdaSQSQueueExecutionRole reach
//! every log group and every queue of the account), every item action on
//! the table limited by `dynamodb:LeadingKeys`, and each function granted
//! exactly what its code uses: the list below is the contract. Only the
//! sender (signs) and the status function (serves) touch signing secrets;
//! only `GetItem` reaches API keys.

use std::collections::{BTreeMap, BTreeSet};

use morag_cli::stack::{python, repo_root};
use serde_json::{json, Value};

/// The translated template (CloudFormation JSON).
fn translated() -> Value {
    let root = repo_root();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out = root.join(format!("target/iam-check-{}-{call}.json", std::process::id()));
    let status = std::process::Command::new(python())
        .arg(root.join("scripts/sam_translate.py"))
        .arg(root.join("template.yaml"))
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running scripts/sam_translate.py (make test installs the venv)");
    assert!(status.success(), "the offline SAM translation failed");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).unwrap()
}

/// An intrinsic as text: `Table.Arn`, `${Table.Arn}/index/GSI1`.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            if let Some(Value::Array(parts)) = o.get("Fn::GetAtt") {
                parts.iter().map(render).collect::<Vec<_>>().join(".")
            } else if let Some(sub) = o.get("Fn::Sub") {
                render(sub)
            } else if let Some(r) = o.get("Ref") {
                format!("Ref:{}", render(r))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn list(v: Option<&Value>) -> Vec<Value> {
    match v {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(one) => vec![one.clone()],
    }
}

/// Item-level DynamoDB actions: on the table they need `LeadingKeys`.
const ITEM_ACTIONS: [&str; 8] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
];

/// The only resource with a `*` in it: the objects under `uploads/`.
const ALLOWED_WILDCARD_RESOURCES: [&str; 1] = ["${UploadsBucket.Arn}/uploads/*"];

/// Every role's problems, and each function's grants as
/// `action resource [leading-key prefix]` lines.
fn review(template: &Value) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let resources = template["Resources"].as_object().unwrap();
    let mut problems = Vec::new();
    let mut role_grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, r) in resources {
        if r["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let props = &r["Properties"];
        for arn in list(props.get("ManagedPolicyArns")) {
            problems.push(format!("{name}: managed policy {}", render(&arn)));
        }
        let grants = role_grants.entry(name.clone()).or_default();
        for policy in list(props.get("Policies")) {
            for st in list(policy["PolicyDocument"].get("Statement")) {
                let sid = st["Sid"].as_str().unwrap_or("?").to_owned();
                if st["Effect"] != "Allow" {
                    continue;
                }
                let prefixes: Vec<String> = list(st.pointer("/Condition/ForAllValues:StringLike/dynamodb:LeadingKeys"))
                    .iter()
                    .map(render)
                    .collect();
                for action in list(st.get("Action")).iter().map(render) {
                    if action.contains('*') {
                        problems.push(format!("{name}/{sid}: wildcard action {action}"));
                    }
                    for resource in list(st.get("Resource")).iter().map(render) {
                        if resource.contains('*') && !ALLOWED_WILDCARD_RESOURCES.contains(&resource.as_str()) {
                            problems.push(format!("{name}/{sid}: wildcard resource {resource}"));
                        }
                        if action.starts_with("kms:")
                            && st
                                .pointer("/Condition/StringEquals/kms:EncryptionContext:purpose")
                                .is_none()
                        {
                            problems.push(format!(
                                "{name}/{sid}: {action} without an encryption-context condition"
                            ));
                        }
                        let on_table = resource == "Table.Arn";
                        if on_table && ITEM_ACTIONS.contains(&action.as_str()) {
                            if prefixes.is_empty() {
                                problems.push(format!(
                                    "{name}/{sid}: {action} on the table without dynamodb:LeadingKeys"
                                ));
                            }
                            for p in &prefixes {
                                if p == "*" || !p.ends_with("#*") {
                                    problems.push(format!("{name}/{sid}: leading key {p} is not a key prefix"));
                                }
                                grants.insert(format!("{action} {resource} {p}"));
                            }
                        } else {
                            grants.insert(format!("{action} {resource}"));
                        }
                    }
                }
            }
        }
    }
    // per function, through its role; no two functions share one
    let mut by_function = BTreeMap::new();
    let mut roles_used = BTreeSet::new();
    for (name, r) in resources {
        if r["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let role = render(&r["Properties"]["Role"]);
        let Some(role_name) = role.strip_suffix(".Arn") else {
            problems.push(format!("{name}: role {role} is not one of the template's roles"));
            continue;
        };
        if !roles_used.insert(role_name.to_owned()) {
            problems.push(format!("{name}: shares role {role_name}"));
        }
        by_function.insert(name.clone(), role_grants.get(role_name).cloned().unwrap_or_default());
    }
    (problems, by_function)
}

fn grants(lines: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in lines {
        // "a,b resource [p1,p2]" expands to every combination
        let mut parts = line.split(' ');
        let actions = parts.next().unwrap();
        let resource = parts.next().unwrap();
        let prefixes: Vec<&str> = parts.next().map(|p| p.split(',').collect()).unwrap_or_default();
        for a in actions.split(',') {
            if prefixes.is_empty() {
                out.insert(format!("{a} {resource}"));
            }
            for p in &prefixes {
                out.insert(format!("{a} {resource} {p}"));
            }
        }
    }
    out
}

/// What each function's code uses, and nothing else.
fn expected() -> BTreeMap<&'static str, BTreeSet<String>> {
    let logs = |group: &str| format!("logs:CreateLogStream,logs:PutLogEvents {group}.Arn");
    let consume = |queue: &str| format!("sqs:ReceiveMessage,sqs:DeleteMessage,sqs:GetQueueAttributes {queue}.Arn");
    BTreeMap::from([
        (
            "IngestFunction",
            grants(&[
                &logs("IngestLogGroup"),
                "dynamodb:GetItem Table.Arn APIKEY#*,TASK#*,IDEM#*,UPLOAD#*",
                "dynamodb:PutItem,dynamodb:UpdateItem,dynamodb:DeleteItem,dynamodb:ConditionCheckItem Table.Arn TASK#*,IDEM#*,UPLOAD#*",
                "s3:PutObject,s3:PutObjectTagging,s3:GetObject,s3:DeleteObject ${UploadsBucket.Arn}/uploads/*",
                "s3:ListBucket UploadsBucket.Arn",
                "sqs:SendMessage ProcessingQueue.Arn",
            ]),
        ),
        (
            "StatusFunction",
            grants(&[
                &logs("StatusLogGroup"),
                "dynamodb:GetItem Table.Arn APIKEY#*,TASK#*,WHSECRET#*",
                "dynamodb:PutItem Table.Arn WHSECRET#*",
                "kms:Encrypt,kms:Decrypt SigningSecretsKey.Arn",
                "dynamodb:BatchGetItem,dynamodb:Query,dynamodb:UpdateItem,dynamodb:PutItem Table.Arn TASK#*",
                "dynamodb:Query ${Table.Arn}/index/GSI1",
                "dynamodb:Query ${Table.Arn}/index/GSI2",
                "dynamodb:Query ${Table.Arn}/index/GSI3",
                "dynamodb:Query ${Table.Arn}/index/GSI4",
                "dynamodb:GetItem,dynamodb:PutItem,dynamodb:DeleteItem,dynamodb:Query Table.Arn WHEP#*",
                "sqs:SendMessage WebhookQueue.Arn",
            ]),
        ),
        (
            "RecorderFunction",
            grants(&[
                &logs("RecorderLogGroup"),
                "dynamodb:GetItem,dynamodb:PutItem,dynamodb:UpdateItem,dynamodb:DeleteItem,dynamodb:Query,dynamodb:ConditionCheckItem Table.Arn TASK#*",
                "dynamodb:Query Table.Arn WHEP#*",
                &consume("StatusEventsQueue"),
                "sqs:SendMessage StatusEventsDLQ.Arn",
                "sqs:SendMessage WebhookQueue.Arn",
            ]),
        ),
        (
            "WatchdogFunction",
            grants(&[
                &logs("WatchdogLogGroup"),
                "dynamodb:Query ${Table.Arn}/index/DueIndex",
                "dynamodb:GetItem,dynamodb:PutItem,dynamodb:UpdateItem,dynamodb:DeleteItem,dynamodb:ConditionCheckItem Table.Arn TASK#*",
                "dynamodb:Query Table.Arn WHEP#*",
                "sqs:SendMessage ProcessingQueue.Arn",
                "sqs:SendMessage WebhookQueue.Arn",
                "sqs:ReceiveMessage,sqs:ChangeMessageVisibility ProcessingDLQ.Arn",
                "sqs:ReceiveMessage,sqs:ChangeMessageVisibility WebhookDLQ.Arn",
            ]),
        ),
        (
            "WebhookSenderFunction",
            grants(&[
                &logs("WebhookSenderLogGroup"),
                "dynamodb:GetItem Table.Arn TASK#*,WHSECRET#*,WHEP#*",
                "dynamodb:PutItem Table.Arn WHSECRET#*",
                "kms:Encrypt,kms:Decrypt SigningSecretsKey.Arn",
                "dynamodb:UpdateItem,dynamodb:Query,dynamodb:PutItem Table.Arn TASK#*",
                "dynamodb:UpdateItem,dynamodb:Query Table.Arn WHEP#*",
                "sqs:SendMessage WebhookQueue.Arn",
                &consume("WebhookQueue"),
                "sqs:ChangeMessageVisibility WebhookQueue.Arn",
                "sqs:SendMessage WebhookDLQ.Arn",
            ]),
        ),
        (
            "ProcessorFunction",
            grants(&[
                &logs("ProcessorLogGroup"),
                "s3:GetObject ${UploadsBucket.Arn}/uploads/*",
                "s3:ListBucket UploadsBucket.Arn",
                &consume("ProcessingQueue"),
                "sqs:SendMessage StatusEventsQueue.Arn",
                "sqs:SendMessage ProcessingDLQ.Arn",
            ]),
        ),
    ])
}

#[test]
fn every_function_gets_exactly_what_its_code_uses() {
    let template = translated();
    let (problems, by_function) = review(&template);
    assert!(problems.is_empty(), "least privilege broken:\n{}", problems.join("\n"));
    let expected = expected();
    assert_eq!(
        by_function.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "every function of the template is listed here"
    );
    for (function, want) in &expected {
        let got = &by_function[*function];
        let extra: Vec<_> = got.difference(want).collect();
        let missing: Vec<_> = want.difference(got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{function}: granted beyond its code {extra:#?}; missing {missing:#?}"
        );
    }
    // the API keys and the signing secrets: who may touch them at all
    for (function, grants) in &by_function {
        for g in grants {
            if g.ends_with("APIKEY#*") {
                assert!(g.starts_with("dynamodb:GetItem "), "{function} may {g}");
            }
            if g.ends_with("WHSECRET#*") {
                // the function that signs and the one that serves them
                assert!(
                    ["WebhookSenderFunction", "StatusFunction"].contains(&function.as_str()),
                    "{function} may {g}"
                );
            }
        }
    }
}

/// The review itself catches what it is for: each broken grant below is
/// reported (so the test above cannot pass by looking at nothing).
#[test]
fn the_review_reports_each_kind_of_breach() {
    let mut template = translated();
    let roles = template["Resources"].as_object_mut().unwrap();
    let role = roles.get_mut("WebhookSenderRole").expect("the sender's role");
    role["Properties"]["ManagedPolicyArns"] =
        json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"]);
    let statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap();
    statements.push(json!({"Sid": "Wild", "Effect": "Allow", "Action": "sqs:*", "Resource": {"Fn::GetAtt": ["WebhookQueue", "Arn"]}}));
    statements.push(json!({"Sid": "Everything", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}));
    statements.push(json!({"Sid": "AnyItem", "Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}));
    statements.push(json!({"Sid": "AnyIndex", "Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": {"Fn::Sub": "${Table.Arn}/index/*"}}));
    let (problems, by_function) = review(&template);
    for needle in [
        "WebhookSenderRole: managed policy",
        "WebhookSenderRole/Wild: wildcard action sqs:*",
        "WebhookSenderRole/Everything: wildcard resource *",
        "WebhookSenderRole/AnyItem: dynamodb:PutItem on the table without dynamodb:LeadingKeys",
        "WebhookSenderRole/AnyIndex: wildcard resource ${Table.Arn}/index/*",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(needle)),
            "{needle} not reported: {problems:#?}"
        );
    }
    assert!(by_function["WebhookSenderFunction"].contains("sqs:SendMessage *"));
}
