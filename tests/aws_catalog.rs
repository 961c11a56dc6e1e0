//! The AWS remediation catalog against moto_server, through the `vigilo` binary, one table row
//! per typed action: a dry run calls nothing; the change happens once; a target already as
//! wanted gets no write call; a target that is gone is skipped; a SIGKILL right after the call
//! is settled by reading; undo restores what was read (or is refused where AWS cannot). Targets
//! are seeded and checked with boto3, an AWS client independent of vigilo's; a recording proxy
//! in front of moto counts vigilo's calls. Then `aws.api`, two accounts, and the example
//! project's queries on Steampipe-shaped tables.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::aws::{Moto, Proxy, boto};
use common::{show, vigilo_env};
use serde_json::Value;

/// The credentials vigilo runs with; none may appear in any output.
const SECRET_KEY: &str = "vigilo-catalog-secret-access-key-77d2";

/// Known credentials, no host AWS config, no IMDS; plus `extra`.
fn aws_env(home: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let none = |f: &str| home.join(f).display().to_string();
    let mut vars: Vec<(String, String)> = vec![
        ("AWS_ACCESS_KEY_ID".into(), "AKIAVIGILOCATALOG001".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ("AWS_CONFIG_FILE".into(), none("no-aws-config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            none("no-aws-credentials"),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

fn pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs vigilo; asserts success and that the secret key never shows; returns stdout.
fn ok(dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let out = vigilo_env(dir, &pairs(env), args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    no_secret(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn no_secret(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET_KEY), "the secret key leaked: {all}");
}

/// One typed action of the catalog and how to seed and check its target with boto3. Python
/// snippets see `i` (seed), or `name` and `extra` (the row), and set `out`.
struct Case {
    /// The action type.
    kind: &'static str,
    /// Its parameters in the remediation (templates over `row.name` and `row.extra`).
    params: &'static str,
    /// The write operation the proxy counts.
    write: &'static str,
    /// The start of its dry-run line.
    call: &'static str,
    /// Creates a target not as wanted: `out = {'name': …, 'extra': …}`.
    seed: &'static str,
    /// `out` = the target's state in a word.
    state: &'static str,
    /// Makes the target as wanted, directly.
    make_wanted: &'static str,
    /// Removes the target.
    remove: &'static str,
    /// States before and after the action, and after its undo (None: undo is refused).
    before: &'static str,
    after: &'static str,
    undone: Option<&'static str>,
    /// The reversal's write operation (empty when undo is refused).
    undo_write: &'static str,
}

const DELETE_LOGIN_PROFILE: Case = Case {
    kind: "aws.iam.delete_login_profile",
    params: "user_name = \"{{ row.name }}\"",
    write: "DeleteLoginProfile",
    call: "iam:DeleteLoginProfile UserName=user-a",
    seed: "n = 'user-' + i\niam.create_user(UserName=n)\niam.create_login_profile(UserName=n, Password='Catalog-pw-1!')\nout = {'name': n, 'extra': ''}",
    state: "try:\n    iam.get_login_profile(UserName=name)\n    out = 'password'\nexcept iam.exceptions.NoSuchEntityException:\n    out = 'none'",
    make_wanted: "iam.delete_login_profile(UserName=name)",
    remove: "iam.delete_login_profile(UserName=name)\niam.delete_user(UserName=name)",
    before: "password",
    after: "none",
    undone: None,
    undo_write: "",
};

const DETACH_USER_POLICY: Case = Case {
    kind: "aws.iam.detach_user_policy",
    params: "user_name = \"{{ row.name }}\"\npolicy_arn = \"{{ row.extra }}\"",
    write: "DetachUserPolicy",
    call: "iam:DetachUserPolicy UserName=user-a PolicyArn=arn:aws:iam::123456789012:policy/p-a",
    seed: "n = 'user-' + i\niam.create_user(UserName=n)\ndoc = json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:ListBucket', 'Resource': '*'}]})\narn = iam.create_policy(PolicyName='p-' + i, PolicyDocument=doc)['Policy']['Arn']\niam.attach_user_policy(UserName=n, PolicyArn=arn)\nout = {'name': n, 'extra': arn}",
    state: "out = 'attached' if any(p['PolicyArn'] == extra for p in iam.list_attached_user_policies(UserName=name)['AttachedPolicies']) else 'detached'",
    make_wanted: "iam.detach_user_policy(UserName=name, PolicyArn=extra)",
    remove: "iam.detach_user_policy(UserName=name, PolicyArn=extra)\niam.delete_user(UserName=name)",
    before: "attached",
    after: "detached",
    undone: Some("attached"),
    undo_write: "AttachUserPolicy",
};

const PUT_BUCKET_VERSIONING: Case = Case {
    kind: "aws.s3.put_bucket_versioning",
    params: "bucket = \"{{ row.name }}\"\nstatus = \"Enabled\"",
    write: "PutBucketVersioning",
    call: "s3:PutBucketVersioning Bucket=bucket-a VersioningConfiguration.Status=Enabled",
    seed: "n = 'bucket-' + i\ns3.create_bucket(Bucket=n)\nout = {'name': n, 'extra': ''}",
    state: "out = s3.get_bucket_versioning(Bucket=name).get('Status', 'never')",
    make_wanted: "s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={'Status': 'Enabled'})",
    remove: "s3.delete_bucket(Bucket=name)",
    before: "never",
    after: "Enabled",
    undone: Some("Suspended"),
    undo_write: "PutBucketVersioning",
};

const PUT_PUBLIC_ACCESS_BLOCK: Case = Case {
    kind: "aws.s3.put_public_access_block",
    // A templated boolean: the row's `extra` is "true".
    params: "bucket = \"{{ row.name }}\"\nblock_public_policy = \"{{ row.extra }}\"",
    write: "PutPublicAccessBlock",
    call: "s3:PutPublicAccessBlock Bucket=bucket-a PublicAccessBlockConfiguration.BlockPublicAcls=true",
    seed: "n = 'bucket-' + i\ns3.create_bucket(Bucket=n)\nout = {'name': n, 'extra': 'true'}",
    state: "try:\n    c = s3.get_public_access_block(Bucket=name)['PublicAccessBlockConfiguration']\n    out = 'blocked' if all(c.values()) else 'partial'\nexcept s3.exceptions.ClientError as e:\n    assert e.response['Error']['Code'] == 'NoSuchPublicAccessBlockConfiguration', e\n    out = 'none'",
    make_wanted: "s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={'BlockPublicAcls': True, 'IgnorePublicAcls': True, 'BlockPublicPolicy': True, 'RestrictPublicBuckets': True})",
    remove: "s3.delete_bucket(Bucket=name)",
    before: "none",
    after: "blocked",
    undone: Some("none"),
    undo_write: "DeletePublicAccessBlock",
};

const TAG_BUCKET: Case = Case {
    kind: "aws.s3.tag_bucket",
    params: "bucket = \"{{ row.name }}\"\ntags = { owner = \"security\" }",
    write: "PutBucketTagging",
    call: "s3:PutBucketTagging Bucket=bucket-a Tags {owner=security}",
    seed: "n = 'bucket-' + i\ns3.create_bucket(Bucket=n)\ns3.put_bucket_tagging(Bucket=n, Tagging={'TagSet': [{'Key': 'team', 'Value': 'web'}]})\nout = {'name': n, 'extra': ''}",
    state: "try:\n    out = ','.join(sorted(t['Key'] + '=' + t['Value'] for t in s3.get_bucket_tagging(Bucket=name)['TagSet']))\nexcept s3.exceptions.ClientError as e:\n    assert e.response['Error']['Code'] == 'NoSuchTagSet', e\n    out = ''",
    make_wanted: "s3.put_bucket_tagging(Bucket=name, Tagging={'TagSet': [{'Key': 'team', 'Value': 'web'}, {'Key': 'owner', 'Value': 'security'}]})",
    remove: "s3.delete_bucket(Bucket=name)",
    before: "team=web",
    after: "owner=security,team=web",
    undone: Some("team=web"),
    undo_write: "PutBucketTagging",
};

const REVOKE_INGRESS: Case = Case {
    kind: "aws.ec2.revoke_security_group_ingress",
    // A templated integer: the row's `extra` is "22".
    params: "group_id = \"{{ row.name }}\"\nprotocol = \"tcp\"\nfrom_port = \"{{ row.extra }}\"\nto_port = 22\ncidr = \"0.0.0.0/0\"",
    write: "RevokeSecurityGroupIngress",
    call: "ec2:RevokeSecurityGroupIngress GroupId=sg-",
    seed: "g = ec2.create_security_group(GroupName='g-' + i, Description='d')['GroupId']\nec2.authorize_security_group_ingress(GroupId=g, IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '0.0.0.0/0', 'Description': 'ssh'}]}])\nout = {'name': g, 'extra': '22'}",
    state: "perms = ec2.describe_security_groups(GroupIds=[name])['SecurityGroups'][0]['IpPermissions']\nout = 'closed'\nfor p in perms:\n    for r in p.get('IpRanges', []):\n        if p.get('FromPort') == 22 and r['CidrIp'] == '0.0.0.0/0':\n            out = 'open:' + r.get('Description', '')",
    make_wanted: "ec2.revoke_security_group_ingress(GroupId=name, IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '0.0.0.0/0'}]}])",
    remove: "ec2.delete_security_group(GroupId=name)",
    before: "open:ssh",
    after: "closed",
    undone: Some("open:ssh"),
    undo_write: "AuthorizeSecurityGroupIngress",
};

const STOP_INSTANCE: Case = Case {
    kind: "aws.ec2.stop_instance",
    params: "instance_id = \"{{ row.name }}\"",
    write: "StopInstances",
    call: "ec2:StopInstances InstanceId.1=i-",
    seed: "ami = ec2.describe_images()['Images'][0]['ImageId']\nr = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)\nout = {'name': r['Instances'][0]['InstanceId'], 'extra': ''}",
    state: "out = ec2.describe_instances(InstanceIds=[name])['Reservations'][0]['Instances'][0]['State']['Name']",
    make_wanted: "ec2.stop_instances(InstanceIds=[name])",
    remove: "ec2.terminate_instances(InstanceIds=[name])",
    before: "running",
    after: "stopped",
    undone: Some("running"),
    undo_write: "StartInstances",
};

/// `[connection.aws.NAME]` reaching `proxy`.
fn connection(name: &str, proxy: &Proxy) -> String {
    format!(
        "[connection.aws.{name}]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        proxy.url()
    )
}

/// A project whose query lists `targets(id, name, extra)` rows of a SQLite database, each
/// remediated after approval by one `kind` action on the proxy's endpoint.
fn project(proxy: &Proxy, kind: &str, params: &str) -> tempfile::TempDir {
    project_with(&connection("default", proxy), kind, params)
}

/// [`project`] with these connections.
fn project_with(connections: &str, kind: &str, params: &str) -> tempfile::TempDir {
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n\
         [notifier.ops]\nnotify = [{{ integration = \"console\" }}]\n\n[approver.alice]\n[approver.bob]\n\n{connections}"
    );
    let remediation = format!(
        "recheck = false\n\n[approval]\nnotifier = \"ops\"\napprovers = [\"alice\", \"bob\"]\nsubject = \"Fix {{{{ row.id }}}}\"\n\n\
         [[action]]\nwhen = \"approve\"\ntype = \"{kind}\"\n{params}\n"
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/targets.sql",
            "-- database: src\n-- primary_key: id\n-- remediation: fix\nselect id, name, extra from targets order by id\n",
        ),
        ("remediations/fix.toml", &remediation),
    ]);
    rusqlite::Connection::open(dir.path().join("src.db"))
        .unwrap()
        .execute_batch("create table targets (id text, name text, extra text)")
        .unwrap();
    dir
}

fn add_row(dir: &Path, id: &str, name: &str, extra: &str) {
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute("insert into targets values (?1, ?2, ?3)", [id, name, extra])
        .unwrap();
}

/// The id of the approval of row `id`.
fn approval_of(dir: &Path, env: &[(String, String)], id: &str) -> String {
    let all: Vec<Value> = serde_json::from_str(&ok(
        dir,
        env,
        &["approvals", "--status", "all", "--format", "json"],
    ))
    .unwrap();
    all.iter()
        .find(|a| a["subject"] == format!("Fix {id}"))
        .unwrap_or_else(|| panic!("no approval for {id}: {all:#?}"))["id"]
        .to_string()
}

/// The id in the first `action ID WORD` line of an output.
fn action_id(out: &str, word: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (id, rest) = l.strip_prefix("action ")?.split_once(' ')?;
            rest.starts_with(word).then(|| id.to_string())
        })
        .unwrap_or_else(|| panic!("no `action ID {word}` line in:\n{out}"))
}

/// Starts `vigilo approve` paused at `point` and SIGKILLs it there.
fn approve_and_kill(dir: &Path, env: &[(String, String)], approval: &str, point: &str) {
    let child = Command::new(env!("CARGO_BIN_EXE_vigilo"))
        .arg("--dir")
        .arg(dir)
        .args(["approve", approval, "--as", "alice"])
        .envs(pairs(env))
        .env("VIGILO_PAUSE_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::kill_when_paused(child, point);
}

/// The whole contract of one typed action, on five targets: `a` is changed (then undone), `b`
/// is already as wanted, `c` is gone, `d` is cut off by a SIGKILL right after the call (and its
/// undo by one after the undo started), `e` by a SIGKILL after the action started, before the
/// call.
async fn catalog_case(case: &Case) {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let url = moto.url();
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(home.path(), &[]);
    let dir = project(&proxy, case.kind, case.params);
    let d = dir.path();
    let mut rows = Vec::new();
    for id in ["a", "b", "c", "d", "e"] {
        let seeded = boto(&url, None, &format!("i = {id:?}\n{}", case.seed));
        let (name, extra) = (
            seeded["name"].as_str().unwrap().to_string(),
            seeded["extra"].as_str().unwrap().to_string(),
        );
        add_row(d, id, &name, &extra);
        rows.push((id, name, extra));
    }
    let row = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();
    let state = |id: &str| {
        let (_, name, extra) = row(id);
        boto(
            &url,
            None,
            &format!("name = {name:?}\nextra = {extra:?}\n{}", case.state),
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    let on_target = |id: &str, snippet: &str| {
        let (_, name, extra) = row(id);
        boto(
            &url,
            None,
            &format!("name = {name:?}\nextra = {extra:?}\n{snippet}"),
        );
    };
    let calls_of = |op: &str, id: &str| {
        let name = row(id).1;
        proxy.calls_of(op).iter().filter(|c| c.names(&name)).count()
    };
    let writes = |id: &str| calls_of(case.write, id);
    let audit = || -> Vec<Value> {
        serde_json::from_str(&ok(d, &env, &["audit", "--format", "json"])).unwrap()
    };
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(state(id), case.before, "{}: seeded {id}", case.kind);
    }

    // A dry run prints the exact call and calls nothing at all.
    let dry = ok(d, &env, &["scan", "--dry-run"]);
    assert!(
        dry.contains(&format!("if approve: would call {}", case.call)),
        "{}: {dry}",
        case.kind
    );
    assert!(proxy.calls().is_empty(), "{:#?}", proxy.calls());
    ok(d, &env, &["scan"]);

    // The change happens once.
    let out = ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "a"), "--as", "alice"],
    );
    let changed = action_id(&out, "succeeded");
    assert_eq!(state("a"), case.after, "{}: {out}", case.kind);
    assert_eq!(writes("a"), 1, "{}", case.kind);

    // Already as wanted: no write call.
    on_target("b", case.make_wanted);
    let out = ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "b"), "--as", "alice"],
    );
    assert!(out.contains("no change needed"), "{}: {out}", case.kind);
    assert_eq!(writes("b"), 0, "{}", case.kind);

    // Gone: skipped, no write call.
    on_target("c", case.remove);
    let out = ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "c"), "--as", "alice"],
    );
    action_id(&out, "skipped");
    assert_eq!(writes("c"), 0, "{}", case.kind);

    // Killed right after the call: the next vigilo reads the target and does not call again.
    approve_and_kill(d, &env, &approval_of(d, &env, "d"), "action.after_call");
    assert_eq!(writes("d"), 1, "{}", case.kind);
    ok(d, &env, &["scan"]);
    assert_eq!(state("d"), case.after, "{}", case.kind);
    assert_eq!(writes("d"), 1, "{}: settled by reading", case.kind);
    let approval_d = approval_of(d, &env, "d");
    let settled = common::last_entry(&audit(), "action.succeeded", &approval_d);
    assert!(
        settled["data"]["result"]["settled"]
            .as_str()
            .unwrap_or_default()
            .starts_with("settled after a restart by reading"),
        "{}: {settled}",
        case.kind
    );

    // Killed after the action started, before its call: the next vigilo reads the target, sees
    // that the call did not take effect, and makes it, once (its second attempt).
    let approval_e = approval_of(d, &env, "e");
    approve_and_kill(d, &env, &approval_e, "action.after_start");
    assert_eq!(writes("e"), 0, "{}: killed before the call", case.kind);
    ok(d, &env, &["scan"]);
    assert_eq!(state("e"), case.after, "{}", case.kind);
    assert_eq!(writes("e"), 1, "{}: one write after the restart", case.kind);
    let entries = audit();
    let rerun = common::last_entry(&entries, "action.failed", &approval_e);
    assert_eq!(rerun["data"]["outcome"], "rerun", "{}: {rerun}", case.kind);
    assert!(
        rerun["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("so the call did not take effect; it runs again"),
        "{}: {rerun}",
        case.kind
    );
    let done = common::last_entry(&entries, "action.succeeded", &approval_e);
    assert_eq!(done["data"]["attempt"], 2, "{}: {done}", case.kind);

    // The undo of `d`'s action, killed after it started: settled by reading, reversed once.
    if !case.undo_write.is_empty() {
        let undone_before = calls_of(case.undo_write, "d");
        let child = Command::new(env!("CARGO_BIN_EXE_vigilo"))
            .arg("--dir")
            .arg(d)
            .args(["undo", &settled["action_id"].to_string(), "--as", "bob"])
            .args(["--reason", "test"])
            .envs(pairs(&env))
            .env("VIGILO_PAUSE_AT", "action.after_start")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::kill_when_paused(child, "action.after_start");
        assert_eq!(
            calls_of(case.undo_write, "d"),
            undone_before,
            "{}",
            case.kind
        );
        ok(d, &env, &["scan"]);
        assert_eq!(state("d"), case.undone.unwrap(), "{}", case.kind);
        assert_eq!(
            calls_of(case.undo_write, "d"),
            undone_before + 1,
            "{}: the reversal, once",
            case.kind
        );
    }

    // Undo puts back what was read, or is refused.
    let undo = vigilo_env(
        d,
        &pairs(&env),
        &["undo", &changed, "--as", "bob", "--reason", "test"],
    );
    no_secret(&undo);
    match case.undone {
        Some(undone) => {
            assert!(undo.status.success(), "{}: {}", case.kind, show(&undo));
            assert_eq!(state("a"), undone, "{}: {}", case.kind, show(&undo));
        }
        None => {
            assert_eq!(undo.status.code(), Some(1), "{}", show(&undo));
            assert!(
                String::from_utf8_lossy(&undo.stderr).contains("not reversible"),
                "{}",
                show(&undo)
            );
            assert_eq!(state("a"), case.after);
        }
    }
    assert!(ok(d, &env, &["audit", "verify"]).contains("intact"));
}

#[tokio::test]
async fn delete_login_profile_follows_the_catalog_contract() {
    catalog_case(&DELETE_LOGIN_PROFILE).await;
}

#[tokio::test]
async fn detach_user_policy_follows_the_catalog_contract() {
    catalog_case(&DETACH_USER_POLICY).await;
}

#[tokio::test]
async fn put_bucket_versioning_follows_the_catalog_contract() {
    catalog_case(&PUT_BUCKET_VERSIONING).await;
}

#[tokio::test]
async fn put_public_access_block_follows_the_catalog_contract() {
    catalog_case(&PUT_PUBLIC_ACCESS_BLOCK).await;
}

#[tokio::test]
async fn tag_bucket_follows_the_catalog_contract() {
    catalog_case(&TAG_BUCKET).await;
}

#[tokio::test]
async fn revoke_security_group_ingress_follows_the_catalog_contract() {
    catalog_case(&REVOKE_INGRESS).await;
}

#[tokio::test]
async fn stop_instance_follows_the_catalog_contract() {
    catalog_case(&STOP_INSTANCE).await;
}

/// The security groups of a batch of revokes are read in one `DescribeSecurityGroups` before
/// any action starts, and each action takes its group's read as its own; a batch that names a
/// group that is gone (the call fails) falls back to each action reading its own group.
#[tokio::test]
async fn a_batch_of_revokes_reads_its_groups_in_one_call() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let url = moto.url();
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(home.path(), &[]);
    // Auto-remediation: `vigilo scan` plans every finding's action and runs them as one batch.
    let config = format!(
        "[state]\nurl = \"sqlite://state.db\"\n\n[database.src]\nurl = \"sqlite://src.db\"\n\n{}",
        connection("default", &proxy)
    );
    let dir = common::project(&[
        ("config/vigilo.toml", &config),
        (
            "queries/targets.sql",
            "-- database: src\n-- primary_key: id\n-- remediation: fix\nselect id, name, extra from targets order by id\n",
        ),
        (
            "remediations/fix.toml",
            "[[action]]\ntype = \"aws.ec2.revoke_security_group_ingress\"\ngroup_id = \"{{ row.name }}\"\n\
             protocol = \"tcp\"\nfrom_port = \"{{ row.extra }}\"\nto_port = \"{{ row.extra }}\"\ncidr = \"0.0.0.0/0\"\n",
        ),
    ]);
    let d = dir.path();
    rusqlite::Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("create table targets (id text, name text, extra text)")
        .unwrap();
    let open_group = |i: &str| {
        boto(
            &url,
            None,
            &format!(
                "g = ec2.create_security_group(GroupName='g-{i}', Description='d')['GroupId']\n\
                 ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=[{{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{{'CidrIp': '0.0.0.0/0'}}]}}])\nout = g"
            ),
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    let open = |g: &str| {
        boto(
            &url,
            None,
            &format!(
                "perms = ec2.describe_security_groups(GroupIds=[{g:?}])['SecurityGroups'][0]['IpPermissions']\n\
                 out = any(p.get('FromPort') == 22 for p in perms)"
            ),
        ) == Value::Bool(true)
    };
    let groups: Vec<String> = ["a", "b", "c"].iter().map(|i| open_group(i)).collect();
    for (i, g) in groups.iter().enumerate() {
        add_row(d, &format!("r{i}"), g, "22");
    }
    let out = ok(d, &env, &["scan"]);
    assert_eq!(
        proxy.calls_of("DescribeSecurityGroups").len(),
        1,
        "{out}\n{:#?}",
        proxy.calls()
    );
    assert_eq!(proxy.calls_of("RevokeSecurityGroupIngress").len(), 3);
    assert!(groups.iter().all(|g| !open(g)), "{out}");
    let audit: Vec<Value> =
        serde_json::from_str(&ok(d, &env, &["audit", "--format", "json"])).unwrap();
    let started: Vec<&Value> = audit
        .iter()
        .filter(|e| e["kind"] == "action.started")
        .collect();
    assert_eq!(started.len(), 3, "{audit:#?}");
    assert!(
        started
            .iter()
            .all(|e| e.to_string().contains(r#""before":{"description":"#)
                || e.to_string().contains(r#""before":{"rule":true"#)),
        "each started action keeps what was read of its rule: {started:#?}"
    );

    // A group that is gone fails the batch's read; each action then reads its own group.
    let (kept, gone) = (open_group("d"), open_group("e"));
    boto(
        &url,
        None,
        &format!("ec2.delete_security_group(GroupId={gone:?})"),
    );
    add_row(d, "r3", &kept, "22");
    add_row(d, "r4", &gone, "22");
    let out = ok(d, &env, &["scan"]);
    assert!(!open(&kept), "{out}");
    assert!(out.contains("no longer exists"), "{out}");
    assert_eq!(proxy.calls_of("RevokeSecurityGroupIngress").len(), 4);
    assert_eq!(
        proxy.calls_of("DescribeSecurityGroups").len(),
        1 + 3,
        "{:#?}",
        proxy.calls_of("DescribeSecurityGroups")
    );
}

/// `aws.api` signs any Query-protocol call with the connection's credentials: EC2's CreateTags
/// tags the group in moto; AccessDenied fails the action with AWS's code and is not retried;
/// throttling is retried; a call cut off by a crash is `unknown` and not repeated; the dry run
/// prints the call and calls nothing.
#[tokio::test]
async fn aws_api_calls_a_query_api_and_records_awss_error_code() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let url = moto.url();
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(home.path(), &[]);
    let params = "service = \"ec2\"\naction = \"CreateTags\"\nversion = \"2016-11-15\"\n\
                  params = { \"ResourceId.1\" = \"{{ row.name }}\", \"Tag.1.Key\" = \"owner\", \"Tag.1.Value\" = \"{{ row.extra }}\" }";
    let dir = project(&proxy, "aws.api", params);
    let d = dir.path();
    let mut groups = Vec::new();
    for id in ["a", "b", "c", "d"] {
        let g = boto(
            &url,
            None,
            &format!(
                "out = ec2.create_security_group(GroupName='g-{id}', Description='d')['GroupId']"
            ),
        );
        let g = g.as_str().unwrap().to_string();
        add_row(d, id, &g, &format!("team-{id}"));
        groups.push(g);
    }
    let owner = |g: &str| {
        boto(
            &url,
            None,
            &format!(
                "tags = ec2.describe_tags(Filters=[{{'Name': 'resource-id', 'Values': [{g:?}]}}])['Tags']\nout = [t['Value'] for t in tags if t['Key'] == 'owner']"
            ),
        )
    };
    let tags_of = |g: &str| {
        proxy
            .calls_of("CreateTags")
            .iter()
            .filter(|c| c.names(g))
            .count()
    };

    let dry = ok(d, &env, &["scan", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "if approve: would call ec2:CreateTags Version=2016-11-15 ResourceId.1={} Tag.1.Key=owner Tag.1.Value=team-a (connection default",
            groups[0]
        )),
        "{dry}"
    );
    assert!(proxy.calls().is_empty(), "{:#?}", proxy.calls());
    ok(d, &env, &["scan"]);

    let out = ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "a"), "--as", "alice"],
    );
    assert!(out.contains("\"operation\":\"ec2:CreateTags\""), "{out}");
    assert_eq!(owner(&groups[0]), serde_json::json!(["team-a"]));
    assert_eq!(tags_of(&groups[0]), 1);

    proxy.fail("CreateTags", 403, "AccessDenied", 1);
    let denied = vigilo_env(
        d,
        &pairs(&env),
        &["approve", &approval_of(d, &env, "b"), "--as", "alice"],
    );
    no_secret(&denied);
    let text = String::from_utf8_lossy(&denied.stdout);
    assert!(
        text.contains("FAILED: AWS ec2:CreateTags (connection default): AccessDenied: injected by the test proxy"),
        "{}",
        show(&denied)
    );
    assert_eq!(tags_of(&groups[1]), 1, "AccessDenied is not retried");
    assert_eq!(owner(&groups[1]), serde_json::json!([]));

    proxy.fail("CreateTags", 400, "Throttling", 1);
    ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "c"), "--as", "alice"],
    );
    assert_eq!(tags_of(&groups[2]), 2, "throttling is retried");
    assert_eq!(owner(&groups[2]), serde_json::json!(["team-c"]));

    approve_and_kill(d, &env, &approval_of(d, &env, "d"), "action.after_call");
    ok(d, &env, &["scan"]);
    assert_eq!(
        tags_of(&groups[3]),
        1,
        "a call cut off by a crash is not repeated"
    );
    let audit = ok(d, &env, &["audit", "--format", "json"]);
    assert!(
        audit.contains("\"outcome\": \"unknown\"")
            || audit.contains("whether the target received it is unknown"),
        "{audit}"
    );
    assert!(ok(d, &env, &["audit", "verify"]).contains("intact"));
}

/// Each row acts through its own connection: two moto servers (two accounts) with a bucket of
/// the same name, and only the named one changes; an unknown connection touches neither.
#[tokio::test]
async fn two_accounts_keep_their_actions_apart() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let (proxy_a, proxy_b) = (Proxy::start(&moto_a.url()), Proxy::start(&moto_b.url()));
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(home.path(), &[]);
    let connections = format!(
        "{}\n{}",
        connection("acct_a", &proxy_a),
        connection("acct_b", &proxy_b)
    );
    let dir = project_with(
        &connections,
        "aws.s3.put_bucket_versioning",
        "connection = \"{{ row.extra }}\"\nbucket = \"{{ row.name }}\"\nstatus = \"Enabled\"",
    );
    let d = dir.path();
    for moto in [&moto_a, &moto_b] {
        boto(&moto.url(), None, "s3.create_bucket(Bucket='shared')");
    }
    add_row(d, "x", "shared", "acct_b");
    add_row(d, "y", "shared", "acct_c");
    ok(d, &env, &["scan"]);
    let versioning = |moto: &Moto| {
        boto(
            &moto.url(),
            None,
            "out = s3.get_bucket_versioning(Bucket='shared').get('Status', 'never')",
        )
    };

    ok(
        d,
        &env,
        &["approve", &approval_of(d, &env, "x"), "--as", "alice"],
    );
    assert_eq!(versioning(&moto_b), "Enabled");
    assert_eq!(versioning(&moto_a), "never");
    assert!(proxy_a.calls().is_empty(), "{:#?}", proxy_a.calls());
    assert_eq!(proxy_b.calls_of("PutBucketVersioning").len(), 1);

    let unknown = vigilo_env(
        d,
        &pairs(&env),
        &["approve", &approval_of(d, &env, "y"), "--as", "alice"],
    );
    assert!(
        String::from_utf8_lossy(&unknown.stdout)
            .contains("no [connection.aws.acct_c] is configured"),
        "{}",
        show(&unknown)
    );
    assert!(proxy_a.calls().is_empty());
    assert_eq!(proxy_b.calls_of("PutBucketVersioning").len(), 1);
}

/// Every catalog action takes `region` (interface.md section 9), IAM's too: an IAM action that
/// names one is signed for it (the region picks the partition's IAM endpoint and signing
/// region), says so in its dry run, and one that names none is signed for its connection's.
#[tokio::test]
async fn iam_actions_take_a_region_and_are_signed_for_it() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(home.path(), &[]);
    let dir = project(
        &proxy,
        "aws.iam.delete_login_profile",
        "user_name = \"{{ row.name }}\"\nregion = \"{{ row.extra }}\"",
    );
    let d = dir.path();
    for (id, region) in [("a", "eu-west-1"), ("b", "")] {
        let user = format!("user-{id}");
        boto(
            &moto.url(),
            None,
            &format!(
                "iam.create_user(UserName={user:?})\niam.create_login_profile(UserName={user:?}, Password='Catalog-pw-1!')"
            ),
        );
        add_row(d, id, &user, region);
    }
    let dry = ok(d, &env, &["scan", "--dry-run"]);
    assert!(
        dry.contains("iam:DeleteLoginProfile UserName=user-a (")
            && dry.contains(", in region eu-west-1)"),
        "{dry}"
    );
    ok(d, &env, &["scan"]);
    for (id, region) in [("a", "eu-west-1"), ("b", "us-east-1")] {
        proxy.clear();
        let out = ok(
            d,
            &env,
            &["approve", &approval_of(d, &env, id), "--as", "alice"],
        );
        assert!(out.contains("succeeded"), "{out}");
        let calls = proxy.calls();
        let iam: Vec<&common::aws::Call> = calls
            .iter()
            .filter(|c| c.action.contains("LoginProfile"))
            .collect();
        assert_eq!(
            iam.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(),
            ["GetLoginProfile", "DeleteLoginProfile"],
            "{calls:#?}"
        );
        for c in iam {
            assert_eq!(c.region, region, "{id}: {c:#?}");
        }
    }
    let gone = boto(
        &moto.url(),
        None,
        "out = 'ok'\nfor u in ('user-a', 'user-b'):\n    try:\n        iam.get_login_profile(UserName=u)\n        out = 'left: ' + u\n    except iam.exceptions.NoSuchEntityException:\n        pass",
    );
    assert_eq!(gone, "ok");
}

/// `vigilo validate` checks each action's parameters by its type, with FILE:LINE.
#[test]
fn validate_checks_each_actions_parameters_by_its_type() {
    let remediation = "[[action]]
type = \"aws.s3.put_bucket_versioning\"
bukket = \"b\"
status = \"Enabled\"

[[action]]
type = \"aws.ec2.revoke_security_group_ingress\"
protocol = \"tcp\"
cidr = \"0.0.0.0/0\"

[[action]]
type = \"aws.ec2.revoke_security_group_ingress\"
group_id = \"sg-1\"
protocol = \"tcpp\"
from_port = 22
to_port = 70000
cidr = \"0.0.0.0/33\"

[[action]]
type = \"aws.s3.put_bucket_versioning\"
bucket = \"b\"
status = \"On\"

[[action]]
type = \"aws.s3.put_public_access_block\"
bucket = \"b\"
block_public_acls = \"yes\"
restrict_public_buckets = \"{{ row.strict }}\"
";
    let dir = common::project(&[
        ("config/vigilo.toml", "[connection.aws.default]\n"),
        ("remediations/r.toml", remediation),
    ]);
    let out = common::vigilo(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "remediations/r.toml:3: action[0]: unknown key `bukket` for action type \"aws.s3.put_bucket_versioning\", expected one of `when`, `type`, `connection`, `region`, `bucket`, `status`",
        "remediations/r.toml:6: action[1]: missing key `group_id`",
        "remediations/r.toml:14: action[2].protocol: must be tcp, udp, icmp, icmpv6, -1 (all) or a protocol number, not \"tcpp\"",
        "remediations/r.toml:16: action[2].to_port: must be a port from 0 to 65535 (or -1), not 70000",
        "remediations/r.toml:17: action[2].cidr: \"0.0.0.0/33\" is not an IPv4 or IPv6 CIDR",
        "remediations/r.toml:22: action[3].status: must be Enabled or Suspended (or a template), not \"On\"",
        "remediations/r.toml:27: action[4].block_public_acls: must be true or false (or a template), not \"yes\"",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    assert!(
        !err.contains("restrict_public_buckets"),
        "a template is checked when it renders: {err}"
    );
}

/// The repository's example project: its queries, on the Steampipe-shaped fixture tables,
/// raise findings whose approved remediations leave moto compliant, each in the account its
/// row names (aws_prod = 111111111111, aws_dev = 222222222222, through their roles), and
/// nothing more: the other rules of the groups stay.
#[tokio::test]
async fn example_project_findings_are_fixed_in_moto_after_approval() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let url = moto.url();
    let open_world = "[{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '0.0.0.0/0'}]}, {'IpProtocol': 'tcp', 'FromPort': 443, 'ToPort': 443, 'IpRanges': [{'CidrIp': '0.0.0.0/0'}]}]";
    let bastion = boto(
        &url,
        Some("111111111111"),
        &format!(
            "iam.create_user(UserName='bob')\niam.create_login_profile(UserName='bob', Password='Fixture-pw-1!')\n\
             s3.create_bucket(Bucket='prod-artifacts')\ns3.create_bucket(Bucket='prod-new')\n\
             g = ec2.create_security_group(GroupName='bastion', Description='d')['GroupId']\n\
             ec2.authorize_security_group_ingress(GroupId=g, IpPermissions={open_world})\nout = g"
        ),
    );
    let windows = boto(
        &url,
        Some("222222222222"),
        "iam.create_user(UserName='frank')\niam.create_login_profile(UserName='frank', Password='Fixture-pw-2!')\n\
         s3w = boto3.client('s3', **{**kw, 'region_name': 'eu-west-1'})\n\
         s3w.create_bucket(Bucket='dev-scratch', CreateBucketConfiguration={'LocationConstraint': 'eu-west-1'})\n\
         ec2w = boto3.client('ec2', **{**kw, 'region_name': 'eu-west-1'})\n\
         g = ec2w.create_security_group(GroupName='windows', Description='d')['GroupId']\n\
         ec2w.authorize_security_group_ingress(GroupId=g, IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 3389, 'ToPort': 3389, 'Ipv6Ranges': [{'CidrIpv6': '::/0'}]}, {'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '10.0.0.0/8'}]}])\nout = g",
    );
    let (bastion, windows) = (bastion.as_str().unwrap(), windows.as_str().unwrap());

    let db = common::PgDb::new("catalog_example").await;
    db.execute(&common::steampipe_fixture()).await;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    db.execute(
        &std::fs::read_to_string(repo.join("tests/fixtures/steampipe_more_tables.sql")).unwrap(),
    )
    .await;
    db.execute(&format!(
        "update aws_vpc_security_group_rule set group_id = case group_id when 'sg-00000000000000a01' then '{bastion}' else '{windows}' end"
    ))
    .await;
    let state = tempfile::tempdir().unwrap();
    let state_url = format!("sqlite://{}", state.path().join("state.db").display());
    let home = tempfile::tempdir().unwrap();
    let env = aws_env(
        home.path(),
        &[
            ("STEAMPIPE_URL", db.url.as_str()),
            ("VIGILO_STATE_URL", state_url.as_str()),
            ("AWS_ENDPOINT_URL", proxy.url().as_str()),
        ],
    );
    ok(repo, &env, &["scan"]);
    // Versioning's first run was a baseline: a bucket created since is a finding.
    db.execute(
        "insert into aws_s3_bucket (name, region, account_id, versioning_enabled, block_public_acls, block_public_policy, ignore_public_acls, restrict_public_buckets, _ctx)
         values ('prod-new', 'us-east-1', '111111111111', false, true, true, true, true, '{\"connection_name\": \"aws_prod\"}')",
    )
    .await;
    ok(repo, &env, &["scan", "s3_bucket_versioning_disabled"]);

    let approvals: Vec<Value> =
        serde_json::from_str(&ok(repo, &env, &["approvals", "--format", "json"])).unwrap();
    let subjects = [
        "Remove the console password of bob?".to_string(),
        "Remove the console password of frank?".to_string(),
        "Enable versioning of bucket prod-new?".to_string(),
        "Block public access to bucket dev-scratch?".to_string(),
        format!("Revoke tcp 22-22 from 0.0.0.0/0 on {bastion}?"),
        format!("Revoke tcp 3389-3389 from ::/0 on {windows}?"),
    ];
    for subject in &subjects {
        let id = approvals
            .iter()
            .find(|a| a["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("no approval {subject:?}: {approvals:#?}"))["id"]
            .to_string();
        let out = ok(repo, &env, &["approve", &id, "--as", "alice"]);
        action_id(&out, "succeeded");
    }
    // The owner-tag select: the chosen team becomes the tag; the other bucket's risk is accepted.
    let asked = |bucket: &str| {
        approvals
            .iter()
            .find(|a| a["subject"] == format!("Who owns S3 bucket {bucket}?"))
            .unwrap_or_else(|| panic!("no owner question for {bucket}: {approvals:#?}"))["id"]
            .to_string()
    };
    let out = ok(
        repo,
        &env,
        &[
            "respond",
            &asked("prod-artifacts"),
            "team-data",
            "--as",
            "bob",
        ],
    );
    action_id(&out, "succeeded");
    let out = ok(
        repo,
        &env,
        &[
            "respond",
            &asked("dev-scratch"),
            "accept",
            "--as",
            "bob",
            "--reason",
            "scratch bucket",
        ],
    );
    assert!(out.contains("decided: accept"), "{out}");
    let accepted: Vec<Value> = serde_json::from_str(&ok(
        repo,
        &env,
        &["findings", "--status", "accepted", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    assert_eq!(accepted[0]["key"]["name"], "dev-scratch");
    assert_eq!(accepted[0]["accepted_reason"], "scratch bucket");
    let tags = boto(
        &url,
        Some("111111111111"),
        "out = {t['Key']: t['Value'] for t in s3.get_bucket_tagging(Bucket='prod-artifacts')['TagSet']}",
    );
    assert_eq!(tags, serde_json::json!({"owner": "team-data"}));

    let prod = boto(
        &url,
        Some("111111111111"),
        &format!(
            "perms = ec2.describe_security_groups(GroupIds=['{bastion}'])['SecurityGroups'][0]['IpPermissions']\n\
             try:\n    iam.get_login_profile(UserName='bob')\n    password = True\nexcept iam.exceptions.NoSuchEntityException:\n    password = False\n\
             out = {{'password': password, 'versioning': s3.get_bucket_versioning(Bucket='prod-new').get('Status'), 'ports': sorted(p['FromPort'] for p in perms)}}"
        ),
    );
    assert_eq!(
        prod,
        serde_json::json!({"password": false, "versioning": "Enabled", "ports": [443]})
    );
    let dev = boto(
        &url,
        Some("222222222222"),
        &format!(
            "ec2w = boto3.client('ec2', **{{**kw, 'region_name': 'eu-west-1'}})\n\
             perms = ec2w.describe_security_groups(GroupIds=['{windows}'])['SecurityGroups'][0]['IpPermissions']\n\
             try:\n    iam.get_login_profile(UserName='frank')\n    password = True\nexcept iam.exceptions.NoSuchEntityException:\n    password = False\n\
             block = s3.get_public_access_block(Bucket='dev-scratch')['PublicAccessBlockConfiguration']\n\
             out = {{'password': password, 'blocked': all(block.values()), 'ports': sorted(p['FromPort'] for p in perms)}}"
        ),
    );
    assert_eq!(
        dev,
        serde_json::json!({"password": false, "blocked": true, "ports": [22]})
    );
    assert!(ok(repo, &env, &["audit", "verify"]).contains("intact"));
}
