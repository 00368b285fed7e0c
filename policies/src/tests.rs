//! Decision tests, property tests and the shared test vectors.
//!
//! These run natively and inside wasmtime (wasm32-wasip2). The vectors file is
//! compiled in with `include_str!`, so the in-guest run reads the very same
//! bytes without a filesystem.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::format;

use crate::*;

/// Start of every fixture: 2027-01-15T08:00:00Z.
const T0: u64 = 1_800_000_000;
const DAY: u64 = record::DAY;

/// The committed vectors (regenerate with `KEYGATE_WRITE_VECTORS=1 cargo test -p keygate-policy vectors`).
const VECTORS: &str = include_str!("../../tests/vectors/policy-v2.json");
const VECTORS_PATH: &str = "tests/vectors/policy-v2.json";

fn issuer(seed: u8) -> (SigningKey, IssuerKey) {
    let sk = SigningKey::from_bytes(&core::array::from_fn(|i| seed.wrapping_add(i as u8)));
    let pk = sk.verifying_key().to_bytes().to_vec();
    let id = issuer_key_id(&pk).unwrap();
    (sk, IssuerKey { id, public_key: pk })
}

fn sign_bytes(sk: &SigningKey, canonical: Vec<u8>) -> SignedRecord {
    let signature = sk.sign(&canonical).to_bytes().to_vec();
    let pk = sk.verifying_key().to_bytes();
    SignedRecord {
        canonical,
        signature,
        issuer_key_id: issuer_key_id(&pk).unwrap(),
    }
}

fn sign(sk: &SigningKey, rec: &KeyRecord) -> SignedRecord {
    sign_bytes(sk, rec.encode().unwrap())
}

fn sign_body(sk: &SigningKey, body: &Body) -> SignedRecord {
    sign_bytes(sk, body.encode().unwrap())
}

fn random(seed: u8) -> [u8; key::RANDOM_BYTES] {
    core::array::from_fn(|i| {
        (i as u8)
            .wrapping_mul(151)
            .wrapping_add(seed.wrapping_mul(17))
    })
}

struct Made {
    key: String,
    record: KeyRecord,
}

fn create(
    seed: u8,
    org: &str,
    level: KeyLevel,
    access: ProjectAccess,
    expiry: ExpiryPolicy,
) -> Made {
    let k = make_key("kg", &random(seed)).unwrap();
    let record = check_create(CreateRequest {
        id: k.id.clone(),
        organization: org.to_string(),
        name: format!("fixture {seed}"),
        level,
        scopes: vec![Scope::TriggerWorkflows],
        access,
        expiry,
        now: T0,
        key_hash: k.key_hash.to_vec(),
        rotated_from: None,
    })
    .unwrap();
    Made { key: k.key, record }
}

/// A registration of `project` in `org`, made at T0 - 1 day.
fn registration(org: &str, project: &str) -> ProjectRegistration {
    register_project(project, org, "fixture project", T0 - DAY).unwrap()
}

/// An organization registered at T0 - 2 days, with this key policy.
fn organization(slug: &str, expiry: ExpiryRule) -> Organization {
    let org = register_organization(slug, "fixture organization", T0 - 2 * DAY).unwrap();
    if expiry == ExpiryRule::Optional {
        return org;
    }
    org.amend(KeyPolicy { expiry }, None).unwrap()
}

/// A request, the signed registration (by issuer 1) of its project in
/// `org`, and the signed registration of `org` (no key policy).
struct Q {
    request: Request,
    registration: SignedRecord,
    organization: SignedRecord,
}

fn req(key: &str, org: &str, project: &str, now: u64) -> Q {
    let (sk, _) = issuer(1);
    Q {
        request: Request {
            presented_key: key.to_string(),
            project: project.to_string(),
            action: Scope::TriggerWorkflows,
            now,
        },
        registration: sign_body(&sk, &Body::Project(registration(org, project))),
        organization: sign_body(
            &sk,
            &Body::Organization(organization(org, ExpiryRule::Optional)),
        ),
    }
}

/// `evaluate` with the key's record and the request's registration.
fn eval(q: &Q, key: Option<&SignedRecord>, trusted: &TrustedIssuers) -> Decision {
    let evidence = Evidence {
        key: key.cloned(),
        tombstone: None,
        project: Some(q.registration.clone()),
        organization: Some(q.organization.clone()),
    };
    evaluate(&q.request, &evidence, trusted)
}

/// `Validator::check` after loading the request's registration.
fn vcheck(v: &mut Validator, q: &Q) -> Decision {
    v.load(&q.registration).unwrap();
    v.load(&q.organization).unwrap();
    v.check(&q.request)
}

fn selected(ids: &[&str]) -> ProjectAccess {
    ProjectAccess::Selected(ids.iter().map(|s| s.to_string()).collect())
}

// ---------------------------------------------------------------- vectors

/// One vector case: a request, the names of its evidence, the decision, and
/// whether a validator holding every verified fact of the file must agree
/// (true where the evidence is what an honest store holds for the request).
struct Case {
    name: &'static str,
    request: Request,
    key: Option<&'static str>,
    tombstone: Option<&'static str>,
    project: Option<&'static str>,
    /// Set from the key's organization when the case does not name one.
    organization: Option<&'static str>,
    expect: Decision,
    validator: bool,
}

struct Fixture {
    issuer: (SigningKey, IssuerKey),
    keys: Vec<(&'static str, [u8; key::RANDOM_BYTES], String)>,
    records: Vec<(&'static str, Body, SignedRecord)>,
    cases: Vec<Case>,
}

/// Every vector, built from fixed seeds. Ed25519 signatures are
/// deterministic, so the result is the same on every run and platform.
fn fixture() -> Fixture {
    let (sk, ik) = issuer(1);
    let (other_sk, _) = issuer(200);
    let org_all = create(
        10,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let org_sel = create(
        11,
        "acme",
        KeyLevel::Organization,
        selected(&["prj_beta", "prj_alpha"]),
        ExpiryPolicy::Never,
    );
    let proj = create(
        12,
        "acme",
        KeyLevel::Project("prj_alpha".into()),
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(7),
    );
    let mut dis = create(
        13,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    dis.record.status = KeyStatus::Disabled;
    dis.record.version = 2;
    let tampered = create(
        14,
        "acme",
        KeyLevel::Organization,
        selected(&["prj_alpha"]),
        ExpiryPolicy::Never,
    );
    let foreign = create(
        15,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let globex = create(
        16,
        "globex",
        KeyLevel::Project("prj_alpha".into()),
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let deleted = create(
        17,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    // initech allows keys of at most 7 days; its 30-day key predates that.
    let initech_30 = create(
        18,
        "initech",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let initech_7 = create(
        19,
        "initech",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(7),
    );
    let defunct = create(
        20,
        "defunct",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let hooli = create(
        21,
        "hooli",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    // A key of an earlier "phoenix", whose record was removed; the slug
    // was registered again a day later, with a project of its own.
    let phoenix = create(
        22,
        "phoenix",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );

    // The tampered record: signed with one project, then widened to all.
    let mut tampered_signed = sign(&sk, &tampered.record);
    let mut widened = tampered.record.clone();
    widened.access = ProjectAccess::AllProjects;
    tampered_signed.canonical = widened.encode().unwrap();

    // Registrations: acme's alpha, beta and new; globex's omega; a deleted
    // acme project; alpha moved to globex after signing.
    let alpha = registration("acme", "prj_alpha");
    let beta = registration("acme", "prj_beta");
    let new = register_project("prj_new", "acme", "created later", T0 + DAY / 2).unwrap();
    let omega = registration("globex", "prj_omega");
    let gone = registration("acme", "prj_gone").delete(T0 - 1).unwrap();
    let mut moved = sign_body(&sk, &Body::Project(alpha.clone()));
    let mut alpha_globex = alpha.clone();
    alpha_globex.organization = "globex".into();
    moved.canonical = alpha_globex.encode().unwrap();

    let tomb = make_tombstone(&deleted.record.id, Some(&deleted.record), T0 + 10).unwrap();
    let key = |r: &KeyRecord| Body::Key(r.clone());

    // Organizations: acme and globex without a policy, initech with keys of
    // at most 7 days, defunct deleted; hooli is never registered. Then
    // initech's registration with its policy lifted after signing.
    let org_acme = organization("acme", ExpiryRule::Optional);
    let org_globex = organization("globex", ExpiryRule::Optional);
    let org_initech = organization("initech", ExpiryRule::AtMost(7));
    let org_defunct = organization("defunct", ExpiryRule::Optional)
        .delete(T0 - DAY)
        .unwrap();
    let mut lifted = sign_body(&sk, &Body::Organization(org_initech.clone()));
    let mut initech_lifted = org_initech.clone();
    initech_lifted.key_policy = KeyPolicy::default();
    lifted.canonical = initech_lifted.encode().unwrap();
    let prj_initech = registration("initech", "prj_initech");
    let prj_defunct = registration("defunct", "prj_defunct");
    let prj_hooli = registration("hooli", "prj_hooli");
    let org_phoenix = register_organization("phoenix", "reborn", T0 + DAY).unwrap();
    let prj_phoenix = register_project("prj_phoenix", "phoenix", "new", T0 + 2 * DAY).unwrap();
    let signed_org = |o: &Organization| {
        (
            Body::Organization(o.clone()),
            sign_body(&sk, &Body::Organization(o.clone())),
        )
    };
    let signed_prj = |p: &ProjectRegistration| {
        (
            Body::Project(p.clone()),
            sign_body(&sk, &Body::Project(p.clone())),
        )
    };
    let records: Vec<(&'static str, Body, SignedRecord)> = vec![
        (
            "org-all-30d",
            key(&org_all.record),
            sign(&sk, &org_all.record),
        ),
        (
            "org-selected",
            key(&org_sel.record),
            sign(&sk, &org_sel.record),
        ),
        (
            "project-alpha-7d",
            key(&proj.record),
            sign(&sk, &proj.record),
        ),
        ("org-disabled", key(&dis.record), sign(&sk, &dis.record)),
        ("org-tampered", key(&widened), tampered_signed),
        (
            "org-foreign-issuer",
            key(&foreign.record),
            sign(&other_sk, &foreign.record),
        ),
        (
            "globex-project",
            key(&globex.record),
            sign(&sk, &globex.record),
        ),
        (
            "org-deleted",
            key(&deleted.record),
            sign(&sk, &deleted.record),
        ),
        (
            "prj-alpha",
            Body::Project(alpha.clone()),
            sign_body(&sk, &Body::Project(alpha)),
        ),
        (
            "prj-beta",
            Body::Project(beta.clone()),
            sign_body(&sk, &Body::Project(beta)),
        ),
        (
            "prj-new",
            Body::Project(new.clone()),
            sign_body(&sk, &Body::Project(new)),
        ),
        (
            "prj-omega-globex",
            Body::Project(omega.clone()),
            sign_body(&sk, &Body::Project(omega)),
        ),
        (
            "prj-gone-deleted",
            Body::Project(gone.clone()),
            sign_body(&sk, &Body::Project(gone)),
        ),
        ("prj-alpha-moved", Body::Project(alpha_globex), moved),
        (
            "tombstone-org-deleted",
            Body::Tombstone(tomb.clone()),
            sign_body(&sk, &Body::Tombstone(tomb.clone())),
        ),
        (
            "tombstone-foreign-issuer",
            Body::Tombstone(tomb.clone()),
            sign_body(&other_sk, &Body::Tombstone(tomb)),
        ),
        (
            "initech-30d",
            key(&initech_30.record),
            sign(&sk, &initech_30.record),
        ),
        (
            "initech-7d",
            key(&initech_7.record),
            sign(&sk, &initech_7.record),
        ),
        (
            "defunct-key",
            key(&defunct.record),
            sign(&sk, &defunct.record),
        ),
        ("hooli-key", key(&hooli.record), sign(&sk, &hooli.record)),
        (
            "phoenix-key",
            key(&phoenix.record),
            sign(&sk, &phoenix.record),
        ),
        (
            "prj-phoenix",
            signed_prj(&prj_phoenix).0,
            signed_prj(&prj_phoenix).1,
        ),
        (
            "organization-phoenix",
            signed_org(&org_phoenix).0,
            signed_org(&org_phoenix).1,
        ),
        (
            "prj-initech",
            signed_prj(&prj_initech).0,
            signed_prj(&prj_initech).1,
        ),
        (
            "prj-defunct",
            signed_prj(&prj_defunct).0,
            signed_prj(&prj_defunct).1,
        ),
        (
            "prj-hooli",
            signed_prj(&prj_hooli).0,
            signed_prj(&prj_hooli).1,
        ),
        (
            "organization-acme",
            signed_org(&org_acme).0,
            signed_org(&org_acme).1,
        ),
        (
            "organization-globex",
            signed_org(&org_globex).0,
            signed_org(&org_globex).1,
        ),
        (
            "organization-initech",
            signed_org(&org_initech).0,
            signed_org(&org_initech).1,
        ),
        (
            "organization-defunct",
            signed_org(&org_defunct).0,
            signed_org(&org_defunct).1,
        ),
        (
            "organization-initech-lifted",
            Body::Organization(initech_lifted),
            lifted,
        ),
    ];

    // A key with org_all's id but another secret.
    let mut wrong_random = random(10);
    wrong_random[key::ID_BYTES..].copy_from_slice(&[0x42; 32]);
    let wrong_secret = make_key("kg", &wrong_random).unwrap().key;
    let mut typo = org_all.key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = make_key("kg", &random(99)).unwrap().key;

    let allow = |m: &Made| {
        Decision::Allow(Allowed {
            key_id: m.record.id.clone(),
            name: m.record.name.clone(),
            organization: m.record.organization.clone(),
            level: m.record.level.clone(),
            record_version: m.record.version,
            expires_at: m.record.expires_at,
        })
    };
    let deny = Decision::Deny;
    use DenyReason as D;
    let r = |key: &str, project: &str, now: u64| Request {
        presented_key: key.to_string(),
        project: project.to_string(),
        action: Scope::TriggerWorkflows,
        now,
    };
    #[allow(clippy::too_many_arguments)]
    fn case(
        name: &'static str,
        request: Request,
        key: Option<&'static str>,
        tombstone: Option<&'static str>,
        project: Option<&'static str>,
        expect: Decision,
        validator: bool,
    ) -> Case {
        Case {
            name,
            request,
            key,
            tombstone,
            project,
            organization: None,
            expect,
            validator,
        }
    }
    let (all, alpha, beta) = (Some("org-all-30d"), Some("prj-alpha"), Some("prj-beta"));
    let with_org = |mut c: Case, org: &'static str| {
        c.organization = Some(org);
        c
    };
    let mut cases = vec![
        case(
            "key longer-lived than its organization's policy now allows",
            r(&initech_30.key, "prj_initech", T0 + 1),
            Some("initech-30d"),
            None,
            Some("prj-initech"),
            deny(D::LifetimeExceedsPolicy),
            true,
        ),
        case(
            "key within its organization's policy",
            r(&initech_7.key, "prj_initech", T0 + 1),
            Some("initech-7d"),
            None,
            Some("prj-initech"),
            allow(&initech_7),
            true,
        ),
        case(
            "expired is reported before the organization's policy",
            r(&initech_30.key, "prj_initech", T0 + 30 * DAY),
            Some("initech-30d"),
            None,
            Some("prj-initech"),
            deny(D::Expired),
            true,
        ),
        with_org(
            case(
                "organization's policy lifted after signing",
                r(&initech_30.key, "prj_initech", T0 + 1),
                Some("initech-30d"),
                None,
                Some("prj-initech"),
                deny(D::OrganizationRegistrationInvalid),
                false,
            ),
            "organization-initech-lifted",
        ),
        with_org(
            case(
                "another organization's registration as evidence",
                r(&org_all.key, "prj_alpha", T0 + 1),
                all,
                None,
                alpha,
                deny(D::OrganizationRegistrationInvalid),
                false,
            ),
            "organization-globex",
        ),
        case(
            "key of a deleted organization",
            r(&defunct.key, "prj_defunct", T0 + 1),
            Some("defunct-key"),
            None,
            Some("prj-defunct"),
            deny(D::OrganizationDeleted),
            true,
        ),
        case(
            "key older than its organization (an earlier one of the same slug)",
            r(&phoenix.key, "prj_phoenix", T0 + 3 * DAY),
            Some("phoenix-key"),
            None,
            Some("prj-phoenix"),
            deny(D::PredatesOrganization),
            true,
        ),
        case(
            "no registration for the key's organization",
            r(&hooli.key, "prj_hooli", T0 + 1),
            Some("hooli-key"),
            None,
            Some("prj-hooli"),
            deny(D::UnknownOrganization),
            true,
        ),
        case(
            "org key, all projects, allowed on a project",
            r(&org_all.key, "prj_alpha", T0 + 1),
            all,
            None,
            alpha,
            allow(&org_all),
            true,
        ),
        case(
            "org key, all projects, allowed on a project created later",
            r(&org_all.key, "prj_new", T0 + DAY),
            all,
            None,
            Some("prj-new"),
            allow(&org_all),
            true,
        ),
        case(
            "org key, last second before expiry",
            r(&org_all.key, "prj_alpha", T0 + 30 * DAY - 1),
            all,
            None,
            alpha,
            allow(&org_all),
            true,
        ),
        case(
            "org key, expired at expires-at exactly",
            r(&org_all.key, "prj_alpha", T0 + 30 * DAY),
            all,
            None,
            alpha,
            deny(D::Expired),
            true,
        ),
        case(
            "org key, one second before it was created",
            r(&org_all.key, "prj_alpha", T0 - 1),
            all,
            None,
            alpha,
            deny(D::NotYetValid),
            true,
        ),
        case(
            "org key on another organization's project",
            r(&org_all.key, "prj_omega", T0 + 1),
            all,
            None,
            Some("prj-omega-globex"),
            deny(D::WrongOrganization),
            true,
        ),
        case(
            "empty string",
            r("", "prj_alpha", T0),
            all,
            None,
            alpha,
            deny(D::Malformed),
            true,
        ),
        case(
            "not a key",
            r("Bearer hunter2", "prj_alpha", T0),
            None,
            None,
            alpha,
            deny(D::Malformed),
            true,
        ),
        case(
            "typo in last character",
            r(&typo, "prj_alpha", T0),
            all,
            None,
            alpha,
            deny(D::BadChecksum),
            true,
        ),
        case(
            "well-formed key, no record",
            r(&unknown, "prj_alpha", T0),
            None,
            None,
            alpha,
            deny(D::UnknownKey),
            true,
        ),
        case(
            "right id, wrong secret",
            r(&wrong_secret, "prj_alpha", T0),
            all,
            None,
            alpha,
            deny(D::SecretMismatch),
            true,
        ),
        case(
            "wrong secret is reported before an unknown project",
            r(&wrong_secret, "prj_nowhere", T0),
            all,
            None,
            None,
            deny(D::SecretMismatch),
            true,
        ),
        case(
            "record widened after signing",
            r(&tampered.key, "prj_beta", T0),
            Some("org-tampered"),
            None,
            beta,
            deny(D::RecordSignatureInvalid),
            false,
        ),
        case(
            "record signed by an untrusted issuer",
            r(&foreign.key, "prj_alpha", T0),
            Some("org-foreign-issuer"),
            None,
            alpha,
            deny(D::RecordSignatureInvalid),
            false,
        ),
        case(
            "deleted key: a valid tombstone beside its old record",
            r(&deleted.key, "prj_alpha", T0 + 20),
            Some("org-deleted"),
            Some("tombstone-org-deleted"),
            alpha,
            deny(D::UnknownKey),
            true,
        ),
        case(
            "deleted key: its old record put back without the tombstone",
            r(&deleted.key, "prj_alpha", T0 + 20),
            Some("org-deleted"),
            None,
            alpha,
            allow(&deleted),
            false,
        ),
        case(
            "tombstone signed by an untrusted issuer",
            r(&deleted.key, "prj_alpha", T0 + 20),
            Some("org-deleted"),
            Some("tombstone-foreign-issuer"),
            alpha,
            deny(D::RecordSignatureInvalid),
            false,
        ),
        case(
            "tombstone of another key",
            r(&org_all.key, "prj_alpha", T0 + 20),
            all,
            Some("tombstone-org-deleted"),
            alpha,
            deny(D::RecordSignatureInvalid),
            false,
        ),
        case(
            "no registration for the project",
            r(&org_all.key, "prj_nowhere", T0 + 1),
            all,
            None,
            None,
            deny(D::UnknownProject),
            true,
        ),
        case(
            "registration moved to another organization after signing",
            r(&org_all.key, "prj_alpha", T0 + 1),
            all,
            None,
            Some("prj-alpha-moved"),
            deny(D::ProjectRegistrationInvalid),
            false,
        ),
        case(
            "registration of another project",
            r(&org_all.key, "prj_alpha", T0 + 1),
            all,
            None,
            beta,
            deny(D::ProjectRegistrationInvalid),
            false,
        ),
        case(
            "deleted project",
            r(&org_all.key, "prj_gone", T0 + 1),
            all,
            None,
            Some("prj-gone-deleted"),
            deny(D::ProjectDeleted),
            true,
        ),
        case(
            "disabled key",
            r(&dis.key, "prj_alpha", T0),
            Some("org-disabled"),
            None,
            alpha,
            deny(D::Disabled),
            true,
        ),
        case(
            "selected key on a selected project",
            r(&org_sel.key, "prj_beta", T0 + 400 * DAY),
            Some("org-selected"),
            None,
            beta,
            allow(&org_sel),
            true,
        ),
        case(
            "selected key on another project",
            r(&org_sel.key, "prj_new", T0 + DAY),
            Some("org-selected"),
            None,
            Some("prj-new"),
            deny(D::ProjectNotGranted),
            true,
        ),
        case(
            "project key on its project",
            r(&proj.key, "prj_alpha", T0),
            Some("project-alpha-7d"),
            None,
            alpha,
            allow(&proj),
            true,
        ),
        case(
            "project key on a sibling project",
            r(&proj.key, "prj_beta", T0),
            Some("project-alpha-7d"),
            None,
            beta,
            deny(D::ProjectNotGranted),
            true,
        ),
        case(
            "project key after 7 days",
            r(&proj.key, "prj_alpha", T0 + 7 * DAY),
            Some("project-alpha-7d"),
            None,
            alpha,
            deny(D::Expired),
            true,
        ),
        case(
            "another organization's key naming this project id",
            r(&globex.key, "prj_alpha", T0),
            Some("globex-project"),
            None,
            alpha,
            deny(D::WrongOrganization),
            true,
        ),
        case(
            "key presented for another key's record",
            r(&proj.key, "prj_alpha", T0),
            all,
            None,
            alpha,
            deny(D::UnknownKey),
            false,
        ),
    ];
    let keys = vec![
        ("org-all-30d", random(10), org_all.key),
        ("org-selected", random(11), org_sel.key),
        ("project-alpha-7d", random(12), proj.key),
        ("org-disabled", random(13), dis.key),
        ("org-tampered", random(14), tampered.key),
        ("org-foreign-issuer", random(15), foreign.key),
        ("globex-project", random(16), globex.key),
        ("org-deleted", random(17), deleted.key),
        ("initech-30d", random(18), initech_30.key),
        ("initech-7d", random(19), initech_7.key),
        ("defunct-key", random(20), defunct.key),
        ("hooli-key", random(21), hooli.key),
        ("phoenix-key", random(22), phoenix.key),
    ];
    // An honest store gives the key's organization as evidence.
    for c in &mut cases {
        if c.organization.is_some() {
            continue;
        }
        let Some(key) = c.key else { continue };
        let (_, body, _) = records.iter().find(|(n, _, _)| *n == key).unwrap();
        let Body::Key(r) = body else { unreachable!() };
        let name = format!("organization-{}", r.organization);
        c.organization = records
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(n, _, _)| *n);
    }
    Fixture {
        issuer: (sk, ik),
        keys,
        records,
        cases,
    }
}

fn record_json(r: &KeyRecord) -> Value {
    json!({
        "id": r.id,
        "organization": r.organization,
        "name": r.name,
        "level": match &r.level { KeyLevel::Organization => json!("organization"), KeyLevel::Project(p) => json!({"project": p}) },
        "scopes": r.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "access": match &r.access { ProjectAccess::AllProjects => json!("all-projects"), ProjectAccess::Selected(v) => json!({"selected": v}) },
        "created_at": r.created_at,
        "expiry": match r.expiry { ExpiryPolicy::Never => json!("never"), ExpiryPolicy::Days(d) => json!({"days": d}) },
        "expires_at": r.expires_at,
        "status": match r.status { KeyStatus::Active => "active", KeyStatus::Disabled => "disabled" },
        "key_hash": hex::encode(r.key_hash),
        "version": r.version,
        "rotated_from": r.rotated_from,
        "rotated_to": r.rotated_to,
    })
}

fn body_json(b: &Body) -> (&'static str, Value) {
    match b {
        Body::Key(r) => ("key", record_json(r)),
        Body::Project(p) => (
            "project",
            json!({
                "id": p.id, "organization": p.organization, "name": p.name,
                "created_at": p.created_at, "deleted_at": p.deleted_at, "version": p.version,
            }),
        ),
        Body::Tombstone(t) => (
            "tombstone",
            json!({
                "id": t.id, "organization": t.organization,
                "deleted_at": t.deleted_at, "last_version": t.last_version,
            }),
        ),
        Body::Organization(o) => (
            "organization",
            json!({
                "slug": o.slug, "name": o.name,
                "key_policy": {"expiry": match o.key_policy.expiry {
                    ExpiryRule::Optional => json!("optional"),
                    ExpiryRule::Required => json!("required"),
                    ExpiryRule::AtMost(d) => json!({"at_most_days": d}),
                }},
                "created_at": o.created_at, "deleted_at": o.deleted_at, "version": o.version,
            }),
        ),
    }
}

fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::Allow(a) => {
            json!({"allow": {"key_id": a.key_id, "record_version": a.record_version, "expires_at": a.expires_at}})
        }
        Decision::Deny(r) => json!({"deny": r.as_str()}),
    }
}

fn vectors_json(f: &Fixture) -> String {
    let v = json!({
        "about": "keygate policy test vectors for keygate:policy@0.2.0 (canonical record formats 1, snapshot format 2). Generated by keygate-policy's tests from fixed seeds; every implementation of the policy must reproduce them. A case names its evidence (key record, tombstone, project registration, organization) by record name; `validator` says whether a validator that loaded every record of this file that verifies must give the same answer. `snapshots`: a full snapshot (sequence 7) of every record that verifies, which must give the same answers as those records, then a delta (7 to 9) that disables the key org-all-30d.",
        "issuer": {
            "seed": hex::encode(f.issuer.0.to_bytes()),
            "public_key": hex::encode(&f.issuer.1.public_key),
            "key_id": f.issuer.1.id,
        },
        "keys": f.keys.iter().map(|(name, random, key)| json!({
            "name": name, "prefix": "kg", "random": hex::encode(random), "key": key,
            "id": parse_key(key).unwrap(), "sha256": hex::encode(hash_key(key)),
        })).collect::<Vec<_>>(),
        "records": f.records.iter().map(|(name, body, signed)| {
            let (kind, fields) = body_json(body);
            json!({
                "name": name, "kind": kind, "fields": fields,
                "canonical": hex::encode(&signed.canonical),
                "signature": hex::encode(&signed.signature),
                "issuer_key_id": signed.issuer_key_id,
            })
        }).collect::<Vec<_>>(),
        "snapshots": fixture_snapshots(f).iter().map(|(name, snap, file)| json!({
            "name": name,
            "file": hex::encode(file),
            "info": {"sequence": snap.sequence, "base": snap.base, "made_at": snap.made_at,
                     "organizations": snap.organizations.len(),
                     "keys": snap.keys.len(), "projects": snap.projects.len(),
                     "tombstones": snap.tombstones.len()},
        })).collect::<Vec<_>>(),
        "cases": f.cases.iter().map(|c| json!({
            "name": c.name,
            "request": {"presented_key": c.request.presented_key, "project": c.request.project, "action": c.request.action.as_str(), "now": c.request.now},
            "key": c.key, "tombstone": c.tombstone, "project": c.project,
            "organization": c.organization,
            "expect": decision_json(&c.expect),
            "validator": c.validator,
        })).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap();
    s.push('\n');
    s
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn vectors_file_is_current() {
    let fresh = vectors_json(&fixture());
    if std::env::var_os("KEYGATE_WRITE_VECTORS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(VECTORS_PATH);
        std::fs::write(path, &fresh).unwrap();
        return;
    }
    assert!(
        fresh == VECTORS,
        "{VECTORS_PATH} is out of date: the key format, an encoding or a decision changed. \
         If that is intended, regenerate with KEYGATE_WRITE_VECTORS=1 cargo test -p keygate-policy vectors"
    );
}

/// Reads the committed file (not the in-memory fixture) and checks every
/// entry with the crate's own functions: this is what another runtime does.
#[test]
fn committed_vectors_hold() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let unhex = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    let issuer = IssuerKey {
        id: v["issuer"]["key_id"].as_str().unwrap().to_string(),
        public_key: unhex(&v["issuer"]["public_key"]),
    };
    assert_eq!(check_issuer_key(&issuer), Ok(()));
    let trusted = TrustedIssuers::new(&[issuer.clone()]);

    for k in v["keys"].as_array().unwrap() {
        let made = make_key(k["prefix"].as_str().unwrap(), &unhex(&k["random"])).unwrap();
        assert_eq!(made.key, k["key"].as_str().unwrap());
        assert_eq!(made.id, k["id"].as_str().unwrap());
        assert_eq!(hex::encode(made.key_hash), k["sha256"].as_str().unwrap());
    }

    let mut records = std::collections::BTreeMap::new();
    let mut validator = Validator::new(&[issuer]);
    let mut loaded = 0;
    for r in v["records"].as_array().unwrap() {
        let signed = SignedRecord {
            canonical: unhex(&r["canonical"]),
            signature: unhex(&r["signature"]),
            issuer_key_id: r["issuer_key_id"].as_str().unwrap().to_string(),
        };
        let decoded = Body::decode(&signed.canonical).unwrap();
        let (kind, fields) = body_json(&decoded);
        assert_eq!(kind, r["kind"], "{}", r["name"]);
        assert_eq!(fields, r["fields"], "{}", r["name"]);
        assert_eq!(decoded.encode().unwrap(), signed.canonical);
        if trusted.verify(&signed) {
            assert!(validator.load(&signed).is_ok(), "{}", r["name"]);
            loaded += 1;
        } else {
            assert_eq!(validator.load(&signed), Err(LoadError::SignatureInvalid));
        }
        records.insert(r["name"].as_str().unwrap().to_string(), signed);
    }
    assert_eq!(
        loaded, 26,
        "the tampered and foreign-issuer records must not load"
    );
    // Ten live keys (the deleted one is gone), nine project
    // registrations, five organizations.
    assert_eq!(
        (
            validator.len(),
            validator.project_count(),
            validator.organization_count()
        ),
        (10, 9, 5)
    );

    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut validator_cases = 0;
    for c in cases {
        let q = &c["request"];
        let request = Request {
            presented_key: q["presented_key"].as_str().unwrap().to_string(),
            project: q["project"].as_str().unwrap().to_string(),
            action: Scope::from_name(q["action"].as_str().unwrap()).unwrap(),
            now: q["now"].as_u64().unwrap(),
        };
        let pick = |field: &str| c[field].as_str().map(|n| records[n].clone());
        let evidence = Evidence {
            key: pick("key"),
            tombstone: pick("tombstone"),
            project: pick("project"),
            organization: pick("organization"),
        };
        let got = evaluate(&request, &evidence, &trusted);
        assert_eq!(decision_json(&got), c["expect"], "evaluate: {}", c["name"]);
        if c["validator"] == true {
            validator_cases += 1;
            assert_eq!(
                decision_json(&validator.check(&request)),
                c["expect"],
                "validator: {}",
                c["name"]
            );
        }
    }
    assert_eq!(validator_cases, 28);

    // The snapshot vectors: the full one answers like the records, the delta
    // then disables org-all-30d.
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    let mut from_snapshot = Validator::new(&[IssuerKey {
        id: v["issuer"]["key_id"].as_str().unwrap().to_string(),
        public_key: unhex(&v["issuer"]["public_key"]),
    }]);
    let info = from_snapshot
        .load_snapshot(&unhex(&snaps[0]["file"]))
        .unwrap();
    assert_eq!(
        (
            info.sequence,
            info.organizations,
            info.keys,
            info.projects,
            info.tombstones
        ),
        (7, 5, 10, 9, 1)
    );
    for c in cases.iter().filter(|c| c["validator"] == true) {
        let q = &c["request"];
        let request = Request {
            presented_key: q["presented_key"].as_str().unwrap().to_string(),
            project: q["project"].as_str().unwrap().to_string(),
            action: Scope::TriggerWorkflows,
            now: q["now"].as_u64().unwrap(),
        };
        assert_eq!(
            decision_json(&from_snapshot.check(&request)),
            c["expect"],
            "snapshot: {}",
            c["name"]
        );
    }
    let info = from_snapshot
        .load_snapshot(&unhex(&snaps[1]["file"]))
        .unwrap();
    assert_eq!((info.sequence, info.base), (9, Some(7)));
    let org_all_key = v["keys"][0]["key"].as_str().unwrap();
    assert_eq!(
        from_snapshot.authorize(org_all_key, "prj_alpha", Scope::TriggerWorkflows, T0 + 1),
        Err(DenyReason::Disabled)
    );
    // Every deny reason the single scope allows is covered.
    for reason in DenyReason::ALL {
        if reason == DenyReason::ScopeNotGranted {
            continue; // unreachable while trigger-workflows is the only scope
        }
        assert!(
            cases.iter().any(|c| c["expect"]["deny"] == reason.as_str()),
            "no vector for {}",
            reason.as_str()
        );
    }
}

// ---------------------------------------------------------------- decisions

#[test]
fn untrusted_or_invalid_issuer_keys_are_ignored() {
    let (_, good) = issuer(1);
    let mut wrong_id = good.clone();
    wrong_id.id = "0000000000000000".into();
    assert_eq!(check_issuer_key(&wrong_id), Err(IssuerError::IdMismatch));
    let short = IssuerKey {
        id: good.id.clone(),
        public_key: vec![1; 31],
    };
    assert_eq!(check_issuer_key(&short), Err(IssuerError::BadPublicKey));
    // The identity point is a weak key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(issuer_key_id(&identity), Err(IssuerError::BadPublicKey));
    assert_eq!(TrustedIssuers::new(&[wrong_id, short, good]).len(), 1);
}

#[test]
fn validator_never_goes_back_to_an_older_version_or_a_forgotten_id() {
    let (sk, ik) = issuer(1);
    let m = create(
        20,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let mut v = Validator::new(&[ik]);
    let v1 = sign(&sk, &m.record);
    let mut disabled = m.record.clone();
    disabled.status = KeyStatus::Disabled;
    disabled.version = 2;
    let v2 = sign(&sk, &disabled);
    assert_eq!(v.load(&v1), Ok(LoadOutcome::Added));
    let q = req(&m.key, "acme", "p1", T0);
    assert!(matches!(vcheck(&mut v, &q), Decision::Allow(_)));
    assert_eq!(v.load(&v2), Ok(LoadOutcome::Replaced));
    assert_eq!(v.load(&v1), Ok(LoadOutcome::Stale));
    assert_eq!(v.load(&v2), Ok(LoadOutcome::Stale));
    assert_eq!(v.check(&q.request), Decision::Deny(DenyReason::Disabled));
    assert!(v.forget(&m.record.id));
    assert_eq!(v.check(&q.request), Decision::Deny(DenyReason::UnknownKey));
    assert_eq!(v.load(&v2), Err(LoadError::Forgotten));
    assert!(!v.forget(&m.record.id));
    assert!(v.is_empty());
}

#[test]
fn validator_refuses_records_it_cannot_verify() {
    let (sk, ik) = issuer(1);
    let (other, _) = issuer(2);
    let m = create(
        21,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let mut v = Validator::new(&[ik]);
    assert_eq!(
        v.load(&sign(&other, &m.record)),
        Err(LoadError::SignatureInvalid)
    );
    let mut garbage = sign(&sk, &m.record);
    garbage.canonical = b"KGR\x01 not a record".to_vec();
    garbage.signature = sk.sign(&garbage.canonical).to_bytes().to_vec();
    assert_eq!(v.load(&garbage), Err(LoadError::NotCanonical));
    let mut short_sig = sign(&sk, &m.record);
    short_sig.signature.pop();
    assert_eq!(v.load(&short_sig), Err(LoadError::SignatureInvalid));
    assert!(v.is_empty());
}

#[test]
fn creation_rules_are_enforced_in_order() {
    let k = make_key("kg", &random(30)).unwrap();
    let base = CreateRequest {
        id: k.id.clone(),
        organization: "acme".into(),
        name: "  crm sync  ".into(),
        level: KeyLevel::Organization,
        scopes: vec![Scope::TriggerWorkflows, Scope::TriggerWorkflows],
        access: selected(&["p2", "p1", "p2"]),
        expiry: ExpiryPolicy::Days(90),
        now: T0,
        key_hash: k.key_hash.to_vec(),
        rotated_from: None,
    };
    let ok = check_create(base.clone()).unwrap();
    assert_eq!(ok.name, "crm sync");
    assert_eq!(ok.scopes, vec![Scope::TriggerWorkflows]);
    assert_eq!(ok.access, selected(&["p1", "p2"]));
    assert_eq!(ok.expires_at, Some(T0 + 90 * DAY));
    assert_eq!(ok.version, 1);

    let with = |f: &dyn Fn(&mut CreateRequest)| {
        let mut r = base.clone();
        f(&mut r);
        check_create(r)
    };
    use RecordError as E;
    assert_eq!(with(&|r| r.id = "short".into()), Err(E::BadKeyId));
    for org in ["", "Acme", "-acme", "acme-", "ac me", &"a".repeat(64)] {
        assert_eq!(
            with(&|r| r.organization = org.into()),
            Err(E::BadOrganization),
            "{org:?}"
        );
    }
    assert_eq!(with(&|r| r.name = "   ".into()), Err(E::NameEmpty));
    assert_eq!(
        with(&|r| r.name = "a\u{7}b".into()),
        Err(E::NameControlCharacter)
    );
    assert_eq!(
        with(&|r| r.name = "a\nb".into()),
        Err(E::NameControlCharacter)
    );
    // Invisible formatting characters: a right-to-left override, a
    // zero-width space, a soft hyphen, a byte-order mark.
    for hidden in ["a\u{202e}b", "a\u{200b}b", "a\u{ad}b", "\u{feff}ab"] {
        assert_eq!(
            with(&|r| r.name = hidden.into()),
            Err(E::NameControlCharacter),
            "{hidden:?}"
        );
    }
    assert_eq!(with(&|r| r.name = "é".repeat(101)), Err(E::NameTooLong));
    assert!(with(&|r| r.name = "é".repeat(100)).is_ok());
    assert_eq!(with(&|r| r.scopes.clear()), Err(E::NoScope));
    assert_eq!(
        with(&|r| r.access = selected(&[])),
        Err(E::EmptyProjectSelection)
    );
    assert_eq!(
        with(&|r| r.access = selected(&["ok", "not ok"])),
        Err(E::BadProjectId("not ok".into()))
    );
    for d in [0u16, 1, 6, 91, 365, u16::MAX] {
        assert_eq!(
            with(&|r| r.expiry = ExpiryPolicy::Days(d)),
            Err(E::ExpiryOutOfRange(d))
        );
    }
    assert!(with(&|r| r.expiry = ExpiryPolicy::Days(7)).is_ok());
    assert_eq!(
        with(&|r| r.expiry = ExpiryPolicy::Never)
            .unwrap()
            .expires_at,
        None
    );
    assert_eq!(
        with(&|r| r.key_hash.pop().map(|_| ()).unwrap_or(())),
        Err(E::BadKeyHash)
    );
    assert_eq!(
        with(&|r| {
            r.now = u64::MAX;
        }),
        Err(E::InconsistentExpiry)
    );
    assert_eq!(
        with(&|r| r.rotated_from = Some("x".into())),
        Err(E::BadKeyId)
    );

    // Project-level keys act on exactly their own project.
    let proj = |access: ProjectAccess| {
        with(&|r| {
            r.level = KeyLevel::Project("p1".into());
            r.access = access.clone();
        })
    };
    assert_eq!(
        proj(ProjectAccess::AllProjects).unwrap().access,
        selected(&["p1"])
    );
    assert_eq!(
        proj(selected(&["p1", "p1"])).unwrap().access,
        selected(&["p1"])
    );
    assert_eq!(proj(selected(&["p2"])), Err(E::ProjectLevelAccess));
    assert_eq!(proj(selected(&["p1", "p2"])), Err(E::ProjectLevelAccess));
    assert_eq!(
        with(&|r| r.level = KeyLevel::Project("bad id".into())),
        Err(E::BadProjectId("bad id".into()))
    );
}

#[test]
fn encode_refuses_records_that_break_rules() {
    let m = create(
        31,
        "acme",
        KeyLevel::Organization,
        selected(&["a", "b"]),
        ExpiryPolicy::Days(10),
    );
    let mut r = m.record.clone();
    r.access = selected(&["b", "a"]);
    assert_eq!(r.encode(), Err(RecordError::NotCanonical));
    let mut r = m.record.clone();
    r.expires_at = Some(T0 + 11 * DAY);
    assert_eq!(r.encode(), Err(RecordError::InconsistentExpiry));
    r.expires_at = None;
    assert_eq!(r.encode(), Err(RecordError::InconsistentExpiry));
    let mut r = m.record.clone();
    r.version = 0;
    assert_eq!(r.encode(), Err(RecordError::BadVersion));
    let mut r = m.record.clone();
    r.name = " padded".into();
    assert_eq!(r.encode(), Err(RecordError::NotCanonical));
    let mut r = m.record;
    r.level = KeyLevel::Project("a".into());
    assert_eq!(r.encode(), Err(RecordError::ProjectLevelAccess));
}

#[test]
fn canonical_bytes_start_with_magic_and_version() {
    let m = create(
        32,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let bytes = m.record.encode().unwrap();
    assert_eq!(&bytes[..4], b"KGR\x01");
    let mut v2 = bytes.clone();
    v2[3] = 2;
    assert_eq!(KeyRecord::decode(&v2), Err(RecordError::NotCanonical));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(KeyRecord::decode(&trailing), Err(RecordError::NotCanonical));
    for cut in 0..bytes.len() {
        assert!(KeyRecord::decode(&bytes[..cut]).is_err());
    }
    // The secret never appears in the record, only its hash.
    assert!(!bytes.windows(43).any(|w| w == &m.key.as_bytes()[14..57]));
}

// ---------------------------------------------------------------- properties

fn arb_org() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn arb_project() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,12}"
}

fn arb_record() -> impl Strategy<Value = KeyRecord> {
    (
        proptest::array::uniform8(any::<u8>()),
        arb_org(),
        "[ -~]{0,20}[!-~]",
        proptest::option::of(arb_project()),
        proptest::option::of(proptest::collection::btree_set(arb_project(), 1..6)),
        (
            any::<u32>(),
            proptest::option::of(7u16..=90),
            0u64..1000,
            any::<bool>(),
        ),
        (1u64..1000, proptest::array::uniform32(any::<u8>())),
        (
            proptest::option::of(proptest::array::uniform8(any::<u8>())),
            proptest::option::of(proptest::array::uniform8(any::<u8>())),
        ),
    )
        .prop_map(
            |(
                id,
                org,
                name,
                project,
                sel,
                (created, days, early, disabled),
                (version, hash),
                (from, to),
            )| {
                let key_id = |b: [u8; 8]| {
                    let mut r = [0u8; key::RANDOM_BYTES];
                    r[..8].copy_from_slice(&b);
                    make_key("kg", &r).unwrap().id
                };
                let created = u64::from(created);
                let (level, access) = match project {
                    Some(p) => (
                        KeyLevel::Project(p.clone()),
                        ProjectAccess::Selected(vec![p]),
                    ),
                    None => (
                        KeyLevel::Organization,
                        sel.map_or(ProjectAccess::AllProjects, |s| {
                            ProjectAccess::Selected(s.into_iter().collect())
                        }),
                    ),
                };
                let (expiry, expires_at) = match days {
                    None => (ExpiryPolicy::Never, None),
                    Some(d) => (
                        ExpiryPolicy::Days(d),
                        Some(created + u64::from(d) * DAY - early),
                    ),
                };
                KeyRecord {
                    id: key_id(id),
                    organization: org,
                    name: name.trim().to_string(),
                    level,
                    scopes: vec![Scope::TriggerWorkflows],
                    access,
                    created_at: created,
                    expiry,
                    expires_at,
                    status: if disabled {
                        KeyStatus::Disabled
                    } else {
                        KeyStatus::Active
                    },
                    key_hash: hash,
                    version,
                    rotated_from: from.map(key_id),
                    rotated_to: to.map(key_id),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encoding_is_deterministic_and_round_trips(rec in arb_record()) {
        let a = rec.encode().unwrap();
        let b = rec.clone().encode().unwrap();
        prop_assert_eq!(&a, &b);
        let back = KeyRecord::decode(&a).unwrap();
        prop_assert_eq!(&back, &rec);
        prop_assert_eq!(back.encode().unwrap(), a);
    }

    #[test]
    fn decode_accepts_only_canonical_bytes(
        rec in arb_record(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        // Start from valid bytes (random bytes would almost never reach past
        // the magic), then overwrite, insert or delete a few bytes.
        let mut bytes = rec.encode().unwrap();
        for (pos, byte, op) in edits {
            let at = pos % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => { bytes.remove(at); }
                _ => bytes.truncate(at),
            }
        }
        if let Ok(r) = KeyRecord::decode(&bytes) {
            prop_assert_eq!(r.encode().unwrap(), bytes.clone());
        }
        if let Ok(b) = Body::decode(&bytes) {
            prop_assert_eq!(b.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn any_flipped_bit_of_record_or_signature_is_rejected(seed in any::<u8>(), pos in any::<usize>(), bit in 0u8..8) {
        let (sk, ik) = issuer(1);
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::AllProjects, ExpiryPolicy::Never);
        let good = sign(&sk, &m.record);
        let trusted = TrustedIssuers::new(&[ik.clone()]);
        let q = req(&m.key, "acme", "prj", T0);
        prop_assert!(matches!(eval(&q, Some(&good), &trusted), Decision::Allow(_)));
        let total = good.canonical.len() + good.signature.len();
        let pos = pos % total;
        let mut bad = good.clone();
        if pos < bad.canonical.len() {
            bad.canonical[pos] ^= 1 << bit;
        } else {
            bad.signature[pos - good.canonical.len()] ^= 1 << bit;
        }
        let d = eval(&q, Some(&bad), &trusted);
        prop_assert!(!matches!(d, Decision::Allow(_)), "flip at {} allowed", pos);
        prop_assert!(Validator::new(&[ik]).load(&bad).is_err());
    }

    #[test]
    fn a_selected_projects_key_never_allows_outside_its_set(
        set in proptest::collection::btree_set(arb_project(), 1..8),
        asked in arb_project(),
        seed in any::<u8>(),
    ) {
        let ids: Vec<String> = set.iter().cloned().collect();
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::Selected(ids), ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let trusted = TrustedIssuers::new(&[ik]);
        let d = eval(&req(&m.key, "acme", &asked, T0), Some(&sign(&sk, &m.record)), &trusted);
        if set.contains(&asked) {
            prop_assert!(matches!(d, Decision::Allow(_)));
        } else {
            prop_assert_eq!(d, Decision::Deny(DenyReason::ProjectNotGranted));
        }
    }

    #[test]
    fn no_key_ever_allows_another_organization(
        own in arb_org(), other in arb_org(), project in arb_project(),
        kind in 0u8..3, seed in any::<u8>(), now in T0..T0 + 100 * DAY,
    ) {
        prop_assume!(own != other);
        let (level, access) = match kind {
            0 => (KeyLevel::Organization, ProjectAccess::AllProjects),
            1 => (KeyLevel::Organization, ProjectAccess::Selected(vec![project.clone()])),
            _ => (KeyLevel::Project(project.clone()), ProjectAccess::AllProjects),
        };
        let m = create(seed, &own, level, access, ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let signed = sign(&sk, &m.record);
        let q = req(&m.key, &other, &project, now);
        let d = eval(&q, Some(&signed), &TrustedIssuers::new(&[ik.clone()]));
        prop_assert_eq!(d, Decision::Deny(DenyReason::WrongOrganization));
        let mut v = Validator::new(&[ik]);
        v.load(&signed).unwrap();
        prop_assert_eq!(vcheck(&mut v, &q), Decision::Deny(DenyReason::WrongOrganization));
    }

    #[test]
    fn an_expired_key_never_allows(days in 7u16..=90, after in 0u64..10_000 * DAY, seed in any::<u8>(), project in arb_project()) {
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::AllProjects, ExpiryPolicy::Days(days));
        let (sk, ik) = issuer(1);
        let signed = sign(&sk, &m.record);
        let now = T0 + u64::from(days) * DAY + after;
        let q = req(&m.key, "acme", &project, now);
        prop_assert_eq!(eval(&q, Some(&signed), &TrustedIssuers::new(&[ik.clone()])), Decision::Deny(DenyReason::Expired));
        let mut v = Validator::new(&[ik]);
        v.load(&signed).unwrap();
        prop_assert_eq!(vcheck(&mut v, &q), Decision::Deny(DenyReason::Expired));
    }

    #[test]
    fn a_project_level_key_allows_only_its_project(own in arb_project(), asked in arb_project(), seed in any::<u8>()) {
        let m = create(seed, "acme", KeyLevel::Project(own.clone()), ProjectAccess::AllProjects, ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let d = eval(&req(&m.key, "acme", &asked, T0), Some(&sign(&sk, &m.record)), &TrustedIssuers::new(&[ik]));
        if own == asked {
            prop_assert!(matches!(d, Decision::Allow(_)));
        } else {
            prop_assert_eq!(d, Decision::Deny(DenyReason::ProjectNotGranted));
        }
    }

    #[test]
    fn any_presented_string_gets_a_decision(s in "\\PC{0,100}|kg_[0-9A-Za-z]{55,65}") {
        let (_, ik) = issuer(1);
        // No record is held or given: every string is malformed, has a bad
        // checksum, or is unknown.
        let mut v = Validator::new(&[ik.clone()]);
        let q = req(&s, "acme", "p", T0);
        let d = vcheck(&mut v, &q);
        let expected = match parse_key(&s) {
            Err(ParseError::Malformed) => DenyReason::Malformed,
            Err(ParseError::BadChecksum) => DenyReason::BadChecksum,
            Ok(_) => DenyReason::UnknownKey,
        };
        prop_assert_eq!(d, Decision::Deny(expected));
        let d2 = eval(&q, None, &TrustedIssuers::new(&[ik]));
        prop_assert_eq!(d2, Decision::Deny(expected));
    }
}

// ---------------------------------------------------------------- changes

#[test]
fn status_changes_and_retirement_make_new_versions() {
    let m = create(
        40,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let r = &m.record;
    assert_eq!(r.status_at(T0), EffectiveStatus::Active);
    assert_eq!(r.status_at(T0 + 30 * DAY), EffectiveStatus::Expired);
    let off = r.with_status(KeyStatus::Disabled).unwrap();
    assert_eq!(off.version, 2);
    assert_eq!(off.status_at(T0), EffectiveStatus::Disabled);
    assert_eq!(off.status_at(T0 + 31 * DAY), EffectiveStatus::Disabled);
    let on = off.with_status(KeyStatus::Active).unwrap();
    assert_eq!((on.version, on.status), (3, KeyStatus::Active));

    let succ = make_key("kg", &random(41)).unwrap().id;
    let old = r.retire(&succ, T0 + DAY, 3600).unwrap();
    assert_eq!(old.expires_at, Some(T0 + DAY + 3600));
    assert_eq!(old.rotated_to.as_deref(), Some(succ.as_str()));
    assert_eq!(old.version, 2);
    assert!(old.encode().is_ok());
    // Grace never extends an earlier expiry.
    assert_eq!(
        r.retire(&succ, T0 + 30 * DAY - 10, 7 * DAY)
            .unwrap()
            .expires_at,
        Some(T0 + 30 * DAY)
    );
    assert_eq!(
        r.retire(&succ, T0, 7 * DAY + 1),
        Err(RecordError::GraceTooLong)
    );
    assert_eq!(old.retire(&succ, T0, 0), Err(RecordError::AlreadyRotated));
    // A disabled key cannot be rotated: the rule lives here, not in a host.
    assert_eq!(off.retire(&succ, T0, 0), Err(RecordError::KeyDisabled));
    // Disabled and already rotated: "already rotated", since enabling it
    // would not make it rotate.
    let off_old = old.with_status(KeyStatus::Disabled).unwrap();
    assert_eq!(
        off_old.retire(&succ, T0, 0),
        Err(RecordError::AlreadyRotated)
    );
    assert_eq!(off.status_at(T0 - 1), EffectiveStatus::Disabled);
    assert_eq!(r.status_at(T0 - 1), EffectiveStatus::NotYetValid);
    assert_eq!(r.retire(&r.id, T0, 0), Err(RecordError::BadKeyId));
    // A never-expiring key gets an expiry from its grace.
    let n = create(
        42,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let retired = n.record.retire(&succ, T0, 0).unwrap();
    assert_eq!(retired.expires_at, Some(T0));
    assert_eq!(retired.status_at(T0), EffectiveStatus::Expired);
}

#[test]
fn project_registrations_are_checked() {
    let reg = register_project("prj_a", "acme", "  Billing  ", T0).unwrap();
    assert_eq!((reg.name.as_str(), reg.version), ("Billing", 1));
    assert_eq!(
        register_project("prj_a", "Acme", "x", T0),
        Err(RecordError::BadOrganization)
    );
    assert_eq!(
        register_project("prj a", "acme", "x", T0),
        Err(RecordError::BadProjectId("prj a".into()))
    );
    assert_eq!(
        register_project("prj_a", "acme", "", T0),
        Err(RecordError::NameEmpty)
    );
    assert_eq!(
        register_project("prj_a", "acme", "a\tb", T0),
        Err(RecordError::NameControlCharacter)
    );
    assert_eq!(
        register_project("prj_a", "acme", &"x".repeat(101), T0),
        Err(RecordError::NameTooLong)
    );
    let gone = reg.delete(T0 + 5).unwrap();
    assert_eq!((gone.deleted_at, gone.version), (Some(T0 + 5), 2));
    assert_eq!(gone.delete(T0 + 6), Err(RecordError::ProjectDeleted));
    for r in [&reg, &gone] {
        let bytes = r.encode().unwrap();
        assert_eq!(&bytes[..4], b"KGP\x01");
        assert_eq!(ProjectRegistration::decode(&bytes).as_ref(), Ok(r));
        assert_eq!(Body::decode(&bytes), Ok(Body::Project(r.clone())));
        assert!(KeyRecord::decode(&bytes).is_err());
        for cut in 0..bytes.len() {
            assert!(ProjectRegistration::decode(&bytes[..cut]).is_err());
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            ProjectRegistration::decode(&trailing),
            Err(RecordError::NotCanonical)
        );
    }
    // A deletion before creation is not canonical.
    let mut early = gone.clone();
    early.deleted_at = Some(T0 - 1);
    assert_eq!(early.encode(), Err(RecordError::NotCanonical));
}

#[test]
fn tombstones_are_checked_and_end_a_key_for_good() {
    let m = create(
        50,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let t = make_tombstone(&m.record.id, Some(&m.record), T0 + 9).unwrap();
    assert_eq!(t.organization.as_deref(), Some("acme"));
    assert_eq!(t.last_version, 1);
    let unreadable = make_tombstone(&m.record.id, None, T0).unwrap();
    assert_eq!(
        (unreadable.organization, unreadable.last_version),
        (None, 0)
    );
    assert_eq!(make_tombstone("nope", None, T0), Err(RecordError::BadKeyId));
    let other = create(
        51,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    assert_eq!(
        make_tombstone(&m.record.id, Some(&other.record), T0),
        Err(RecordError::BadKeyId)
    );
    let bytes = t.encode().unwrap();
    assert_eq!(&bytes[..4], b"KGT\x01");
    assert_eq!(Body::decode(&bytes), Ok(Body::Tombstone(t.clone())));
    for cut in 0..bytes.len() {
        assert!(Tombstone::decode(&bytes[..cut]).is_err());
    }

    // In a validator: the record goes, and never comes back.
    let (sk, ik) = issuer(1);
    let mut v = Validator::new(&[ik.clone()]);
    let q = req(&m.key, "acme", "prj_a", T0 + 10);
    let rec = sign(&sk, &m.record);
    v.load(&rec).unwrap();
    assert!(matches!(vcheck(&mut v, &q), Decision::Allow(_)));
    let tomb = sign_body(&sk, &Body::Tombstone(t));
    assert_eq!(v.load(&tomb), Ok(LoadOutcome::Added));
    assert_eq!(v.load(&tomb), Ok(LoadOutcome::Stale));
    assert_eq!(v.check(&q.request), Decision::Deny(DenyReason::UnknownKey));
    assert_eq!(v.load(&rec), Err(LoadError::Forgotten));
    // A later version of the record does not bring it back either.
    let mut later = m.record.clone();
    later.version = 9;
    assert_eq!(v.load(&sign(&sk, &later)), Err(LoadError::Forgotten));
    assert!(v.is_empty());

    // With evaluate: a valid tombstone beats whatever record sits beside it.
    let trusted = TrustedIssuers::new(&[ik]);
    let evidence = Evidence {
        key: Some(rec),
        tombstone: Some(tomb),
        project: Some(q.registration.clone()),
        organization: Some(q.organization.clone()),
    };
    assert_eq!(
        evaluate(&q.request, &evidence, &trusted),
        Decision::Deny(DenyReason::UnknownKey)
    );
}

#[test]
fn a_validator_keeps_deleted_projects_deleted_and_needs_a_registration() {
    let (sk, ik) = issuer(1);
    let m = create(
        52,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let mut v = Validator::new(&[ik]);
    v.load(&sign(&sk, &m.record)).unwrap();
    let q = req(&m.key, "acme", "prj_a", T0);
    // No registration held: the project is unknown.
    assert_eq!(
        v.check(&q.request),
        Decision::Deny(DenyReason::UnknownProject)
    );
    let live = registration("acme", "prj_a");
    let gone = live.delete(T0).unwrap();
    let (live_s, gone_s) = (
        sign_body(&sk, &Body::Project(live.clone())),
        sign_body(&sk, &Body::Project(gone)),
    );
    assert_eq!(v.load(&live_s), Ok(LoadOutcome::Added));
    // Nor is the key's organization: a project alone does not allow.
    assert_eq!(
        v.check(&q.request),
        Decision::Deny(DenyReason::UnknownOrganization)
    );
    assert_eq!(v.load(&q.organization), Ok(LoadOutcome::Added));
    assert!(matches!(v.check(&q.request), Decision::Allow(_)));
    assert_eq!(v.load(&gone_s), Ok(LoadOutcome::Replaced));
    assert_eq!(
        v.check(&q.request),
        Decision::Deny(DenyReason::ProjectDeleted)
    );
    // Neither the old version nor a higher live one undeletes it.
    assert_eq!(v.load(&live_s), Ok(LoadOutcome::Stale));
    let mut undeleted = live;
    undeleted.version = 7;
    assert_eq!(
        v.load(&sign_body(&sk, &Body::Project(undeleted))),
        Ok(LoadOutcome::Stale)
    );
    assert_eq!(
        v.check(&q.request),
        Decision::Deny(DenyReason::ProjectDeleted)
    );
}

fn insert(s: &str, at: usize, what: &str) -> String {
    format!("{}{what}{}", &s[..at], &s[at..])
}

fn replace(s: &str, at: usize, c: char) -> String {
    format!("{}{c}{}", &s[..at], &s[at + 1..])
}

#[test]
fn key_looking_text_is_recognised() {
    let k = make_key("kg", &random(60)).unwrap();
    let custom = make_key("acme", &random(61)).unwrap();
    for text in [
        k.key.as_str(),
        custom.key.as_str(),
        &format!("Bearer {}", k.key),
        &format!("--name={}", k.key),
        &format!("prj_a,{}", custom.key),
        &k.key[..k.key.len() - 1],  // cut short
        &k.key[..k.key.len() - 15], // much shorter, still most of the secret
        &format!("{}x", k.key),     // one extra character
        &k.key[3..],                // without its prefix
        &format!("kg-{}", &k.key[3..]),
        &format!("KG_{}", &k.key[3..]),
        &format!("1kg_{}", &k.key[3..]),
        &format!("kg {}", &k.key[3..]),
        &insert(&k.key, 30, " "),
        &insert(&k.key, 30, "-"),
        &insert(&k.key, 33, "\u{200b}"), // zero-width space, as chats paste it
        &insert(&k.key, 20, "\u{ad}"),   // soft hyphen
        &insert(&k.key, 25, "\u{ff11}"), // a full-width digit
        &replace(&k.key, 31, '!'),
        &k.key[14..14 + 32], // 32 characters of the secret alone
        &format!("name {}", &k.key[14..14 + 32]),
    ] {
        assert!(looks_like_key(text, None), "{text:?}");
    }
    for text in [
        "prj_EcH3aVaFu27",
        "crm-sync",
        "billing_service_account",
        "kg_EcH3aVaFu27",
        "",
        "_",
        "snake_case_words_are_fine_here_for_names_ok",
        &"a".repeat(40),
        &k.key[14..14 + 31],
        "3f786850e387550fdab836ed7e6dc881de23001b", // a git sha
        "deploy-3f786850e387550fdab836ed7e6dc881de23001b3f786850e3875",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "@100000000000000000000000000000000000000000",
        "QuarterlyReconciliation Billing Integration",
        "a-very-long-organization-slug-with-many-words-in-it",
        "/var/lib/keygate/data/prod/europe-west1/tenants/acme",
    ] {
        assert!(!looks_like_key(text, None), "{text:?}");
    }
    // With the deployment's prefix known, anything after it counts.
    assert!(looks_like_key("kg_EcH3aVaFu27", Some("kg")));
    assert!(looks_like_key("see acme_x", Some("acme")));
    assert!(!looks_like_key("acme", Some("acme")));
    assert!(!looks_like_key("prj_x", Some("kg")));
}

/// Every single-byte change of every canonical fact in the vectors either
/// fails to decode or decodes to something that encodes back to exactly the
/// changed bytes; both outcomes occur.
#[test]
fn mutated_canonical_bytes_decode_only_when_canonical() {
    let f = fixture();
    let (mut accepted, mut refused) = (0, 0);
    for (_, _, signed) in &f.records {
        let good = &signed.canonical;
        for pos in 0..good.len() {
            for byte in [
                0u8,
                1,
                0x7f,
                0xff,
                b'a',
                good[pos] ^ 1,
                good[pos].wrapping_add(1),
            ] {
                let mut bad = good.clone();
                bad[pos] = byte;
                if bad == *good {
                    continue;
                }
                match Body::decode(&bad) {
                    Ok(b) => {
                        accepted += 1;
                        assert_eq!(b.encode().unwrap(), bad, "byte {pos} = {byte}");
                    }
                    Err(_) => refused += 1,
                }
            }
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn only_a_key_that_is_not_live_and_genuine_is_unauthenticated() {
    let unauthenticated: Vec<&str> = DenyReason::ALL
        .iter()
        .filter(|r| r.class() == DenyClass::Unauthenticated)
        .map(|r| r.as_str())
        .collect();
    assert_eq!(
        unauthenticated,
        [
            "malformed",
            "bad-checksum",
            "unknown-key",
            "secret-mismatch",
            "record-signature-invalid"
        ]
    );
    // Every project reason is forbidden, never a "not found": a status must
    // not tell a key of one organization which project ids exist elsewhere.
    for r in [
        DenyReason::UnknownProject,
        DenyReason::ProjectDeleted,
        DenyReason::WrongOrganization,
    ] {
        assert_eq!(r.class(), DenyClass::Forbidden);
        assert_eq!(r.class().http_status(), 403);
    }
    assert_eq!(DenyClass::Unauthenticated.http_status(), 401);
    assert_eq!(DenyClass::Forbidden.as_str(), "forbidden");
}

#[test]
fn every_reason_and_error_has_a_code_and_a_message() {
    let mut codes = std::collections::BTreeSet::new();
    for r in DenyReason::ALL {
        assert!(codes.insert(r.as_str()));
        assert!(!format!("{r}").is_empty());
    }
    assert_eq!(DenyReason::ALL.len(), 19);
    let errors = [
        RecordError::BadKeyId,
        RecordError::ExpiryOutOfRange(91),
        RecordError::BadProjectId("x y".into()),
        RecordError::KeyDisabled,
        RecordError::ProjectDeleted,
        RecordError::ExpiryRequired,
        RecordError::ExpiryExceedsPolicy(30),
        RecordError::OrganizationDeleted,
        RecordError::MaxExpiryOutOfRange(6),
        RecordError::PredatesOrganization,
    ];
    for e in &errors {
        assert!(e.code().chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    }
    assert_eq!(
        format!("{}", RecordError::ExpiryOutOfRange(91)),
        "expiry of 91 days is outside the policy (7 to 90 days, or never)"
    );
}

// ---------------------------------------------------------------- snapshots

/// The vectors' snapshots: the full one at sequence 7 and a delta to 9 that
/// disables org-all-30d.
fn fixture_snapshots(f: &Fixture) -> Vec<(&'static str, Snapshot, Vec<u8>)> {
    let (full, full_file) = fixture_snapshot(f, 7, None);
    let org_all = full.keys.iter().find(|r| r.name == "fixture 10").unwrap();
    let delta = Snapshot {
        sequence: 9,
        base: Some(7),
        made_at: T0 + 60,
        keys: vec![org_all.with_status(KeyStatus::Disabled).unwrap()],
        organizations: Vec::new(),
        projects: Vec::new(),
        tombstones: Vec::new(),
        ..full.clone()
    };
    let delta_file = sign_snapshot(&f.issuer.0, &delta);
    vec![
        ("full-7", full, full_file),
        ("delta-7-9", delta, delta_file),
    ]
}

/// A snapshot file of every verified fact of the fixture, at `sequence`.
fn fixture_snapshot(f: &Fixture, sequence: u64, base: Option<u64>) -> (Snapshot, Vec<u8>) {
    let trusted = TrustedIssuers::new(core::slice::from_ref(&f.issuer.1));
    let mut snap = Snapshot {
        issuer_key_id: f.issuer.1.id.clone(),
        sequence,
        base,
        made_at: T0 + 30,
        organizations: Vec::new(),
        keys: Vec::new(),
        projects: Vec::new(),
        tombstones: Vec::new(),
    };
    for (_, _, signed) in &f.records {
        match trusted.open(signed) {
            Ok(Body::Organization(o)) => snap.organizations.push(o),
            Ok(Body::Key(r)) => snap.keys.push(r),
            Ok(Body::Project(p)) => snap.projects.push(p),
            Ok(Body::Tombstone(t)) => snap.tombstones.push(t),
            Err(_) => {}
        }
    }
    let dead: Vec<String> = snap.tombstones.iter().map(|t| t.id.clone()).collect();
    snap.keys.retain(|r| !dead.contains(&r.id));
    snap.keys.sort_by(|a, b| a.id.cmp(&b.id));
    snap.organizations.sort_by(|a, b| a.slug.cmp(&b.slug));
    snap.projects.sort_by(|a, b| a.id.cmp(&b.id));
    snap.tombstones.sort_by(|a, b| a.id.cmp(&b.id));
    let file = sign_snapshot(&f.issuer.0, &snap);
    (snap, file)
}

fn sign_snapshot(sk: &SigningKey, snap: &Snapshot) -> Vec<u8> {
    let mut file = snap.encode().unwrap();
    let sig = sk.sign(&file).to_bytes();
    file.extend_from_slice(&sig);
    file
}

#[test]
fn a_snapshot_loads_atomically_and_decides_like_the_facts_it_holds() {
    let f = fixture();
    let (snap, file) = fixture_snapshot(&f, 7, None);
    assert_eq!(
        Snapshot::decode(&file[..file.len() - 64]).as_ref(),
        Ok(&snap)
    );
    let mut v = Validator::new(core::slice::from_ref(&f.issuer.1));
    assert_eq!(v.sequence(), None);
    let info = v.load_snapshot(&file).unwrap();
    assert_eq!(
        (
            info.sequence,
            info.base,
            info.organizations,
            info.keys,
            info.projects,
            info.tombstones
        ),
        (7, None, 5, 10, 9, 1)
    );
    assert_eq!((v.sequence(), v.snapshot_time()), (Some(7), Some(T0 + 30)));
    // Every case a validator must agree on: the same answer from a snapshot,
    // through check and through authorize.
    let mut compared = 0;
    for c in f.cases.iter().filter(|c| c.validator) {
        compared += 1;
        assert_eq!(v.check(&c.request), c.expect, "{}", c.name);
        let got = v.authorize(
            &c.request.presented_key,
            &c.request.project,
            c.request.action,
            c.request.now,
        );
        match &c.expect {
            Decision::Allow(a) => assert_eq!(
                got,
                Ok(Authorized {
                    key_id: a.key_id.clone(),
                    record_version: a.record_version,
                    expires_at: a.expires_at,
                }),
                "{}",
                c.name
            ),
            Decision::Deny(r) => assert_eq!(got, Err(*r), "{}", c.name),
        }
    }
    assert_eq!(compared, 28);
}

#[test]
fn bad_snapshots_are_refused_and_the_validator_keeps_what_it_held() {
    let f = fixture();
    let (snap, file) = fixture_snapshot(&f, 7, None);
    let trusted = core::slice::from_ref(&f.issuer.1);
    let mut v = Validator::new(trusted);
    v.load_snapshot(&file).unwrap();
    let probe = f
        .cases
        .iter()
        .find(|c| c.validator && matches!(c.expect, Decision::Allow(_)))
        .unwrap();
    let check = |v: &Validator| assert_eq!(v.check(&probe.request), probe.expect);
    // Every single-bit flip, a cut anywhere, an extra byte.
    for pos in 0..file.len() {
        let mut bad = file.clone();
        bad[pos] ^= 1 << (pos % 8);
        assert!(v.load_snapshot(&bad).is_err(), "flip at {pos}");
    }
    for cut in [0, 1, 63, 64, 65, file.len() / 2, file.len() - 1] {
        assert!(v.load_snapshot(&file[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(v.load_snapshot(&longer).is_err());
    check(&v);
    assert_eq!(v.sequence(), Some(7));
    // The same or an older sequence: a replay or a rollback.
    assert_eq!(
        v.load_snapshot(&file),
        Err(SnapshotError::NotNewer { held: 7, got: 7 })
    );
    let (_, older) = fixture_snapshot(&f, 6, None);
    assert_eq!(
        v.load_snapshot(&older),
        Err(SnapshotError::NotNewer { held: 7, got: 6 })
    );
    // Signed by another key, or naming another issuer than the signer.
    let (other, _) = issuer(200);
    assert_eq!(
        v.load_snapshot(&sign_snapshot(
            &other,
            &Snapshot {
                sequence: 8,
                ..snap.clone()
            }
        )),
        Err(SnapshotError::SignatureInvalid)
    );
    let (_, other_id) = issuer(200);
    let renamed = Snapshot {
        sequence: 8,
        issuer_key_id: other_id.id,
        ..snap.clone()
    };
    assert_eq!(
        v.load_snapshot(&sign_snapshot(&f.issuer.0, &renamed)),
        Err(SnapshotError::SignatureInvalid)
    );
    // Signed but not canonical (ids out of order).
    let mut unsorted = Snapshot {
        sequence: 8,
        ..snap.clone()
    };
    unsorted.keys.reverse();
    assert_eq!(unsorted.encode(), Err(RecordError::NotCanonical));
    let mut raw = snap.encode().unwrap();
    raw.truncate(raw.len() - 4); // a broken tombstone list
    let sig = f.issuer.0.sign(&raw).to_bytes();
    raw.extend_from_slice(&sig);
    assert_eq!(v.load_snapshot(&raw), Err(SnapshotError::NotCanonical));
    check(&v);
    assert_eq!(v.sequence(), Some(7));
}

#[test]
fn a_snapshot_given_as_hex_loads_the_same() {
    let f = fixture();
    let (_, file) = fixture_snapshot(&f, 7, None);
    let text: String = file.iter().map(|b| format!("{b:02x}")).collect();
    let mut v = Validator::new(core::slice::from_ref(&f.issuer.1));
    assert_eq!(
        v.load_snapshot_hex(&text[..text.len() - 1]),
        Err(SnapshotError::NotCanonical)
    );
    assert_eq!(
        v.load_snapshot_hex(&format!("{}zz", &text[..text.len() - 2])),
        Err(SnapshotError::NotCanonical)
    );
    let info = v.load_snapshot_hex(&text.to_uppercase()).unwrap();
    assert_eq!((info.sequence, info.keys), (7, 10));
    assert_eq!(snapshot::decode_hex("00fF10"), Some(vec![0, 255, 16]));
}

/// Load `file` into `v` through a [`SnapshotStream`], its canonical bytes
/// cut into pieces of `sizes` (cycling).
fn load_in_pieces(
    v: &mut Validator,
    file: &[u8],
    sizes: &[usize],
) -> Result<SnapshotInfo, SnapshotError> {
    let (canonical, signature) = file.split_at(file.len().saturating_sub(64));
    let mut stream = v.begin_snapshot(signature);
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= canonical.len() {
            break;
        }
        let n = (*size).max(1).min(canonical.len() - at);
        stream.feed(&canonical[at..at + n])?;
        at += n;
    }
    v.finish_snapshot(stream)
}

#[test]
fn a_snapshot_in_pieces_loads_like_the_whole_file() {
    let f = fixture();
    let snaps = fixture_snapshots(&f);
    let (full, delta) = (&snaps[0].2, &snaps[1].2);
    let trusted = core::slice::from_ref(&f.issuer.1);
    let mut whole = Validator::new(trusted);
    let full_info = whole.load_snapshot(full).unwrap();
    let after_full = format!("{whole:?}");
    let delta_info = whole.load_snapshot(delta).unwrap();
    let after_delta = format!("{whole:?}");
    assert_eq!((full_info.keys, delta_info.keys), (10, 1));
    for sizes in [&[1][..], &[2, 47, 5], &[46], &[47], &[48], &[4096]] {
        let mut v = Validator::new(trusted);
        assert_eq!(
            load_in_pieces(&mut v, full, sizes),
            Ok(full_info),
            "{sizes:?}"
        );
        assert_eq!(format!("{v:?}"), after_full, "{sizes:?}");
        assert_eq!(
            load_in_pieces(&mut v, delta, sizes),
            Ok(delta_info),
            "{sizes:?}"
        );
        assert_eq!(format!("{v:?}"), after_delta, "{sizes:?}");
    }
    // A stream is checked against the validator that finishes it: begun on
    // one that trusts the issuer, finished on one that does not.
    let (_, stranger) = issuer(200);
    let mut other = Validator::new(&[stranger]);
    let (canonical, signature) = full.split_at(full.len() - 64);
    let mut stream = whole.begin_snapshot(signature);
    stream.feed(canonical).unwrap();
    assert_eq!(
        other.finish_snapshot(stream),
        Err(SnapshotError::SignatureInvalid)
    );
    assert_eq!((other.sequence(), other.len()), (None, 0));
    // A wrong signature length is a signature that does not verify.
    let mut v = Validator::new(trusted);
    let mut stream = v.begin_snapshot(&signature[..63]);
    stream.feed(canonical).unwrap();
    assert_eq!(
        v.finish_snapshot(stream),
        Err(SnapshotError::SignatureInvalid)
    );
    // Hex pieces.
    let mut stream = v.begin_snapshot(signature);
    let text: String = canonical.iter().map(|b| format!("{b:02x}")).collect();
    for piece in text.as_bytes().chunks(100) {
        stream
            .feed_hex(core::str::from_utf8(piece).unwrap())
            .unwrap();
    }
    assert_eq!(v.finish_snapshot(stream), Ok(full_info));
}

#[test]
fn a_stream_refused_once_stays_refused_and_changes_nothing() {
    let f = fixture();
    let snaps = fixture_snapshots(&f);
    let full = &snaps[0].2;
    let trusted = core::slice::from_ref(&f.issuer.1);
    let (canonical, signature) = full.split_at(full.len() - 64);
    let mut v = Validator::new(trusted);
    let before = format!("{v:?}");
    // The header's magic broken in the first piece: refused at once, and
    // every later piece and the finish are refused the same way.
    let mut bad = canonical.to_vec();
    bad[0] = b'X';
    let mut stream = v.begin_snapshot(signature);
    assert_eq!(stream.feed(&bad[..100]), Err(SnapshotError::NotCanonical));
    assert_eq!(
        stream.feed(&canonical[100..]),
        Err(SnapshotError::NotCanonical)
    );
    assert_eq!(v.finish_snapshot(stream), Err(SnapshotError::NotCanonical));
    // Bytes after the last list, or a file cut short.
    let mut stream = v.begin_snapshot(signature);
    stream.feed(canonical).unwrap();
    assert_eq!(stream.feed(&[0]), Err(SnapshotError::NotCanonical));
    assert_eq!(v.finish_snapshot(stream), Err(SnapshotError::NotCanonical));
    let mut stream = v.begin_snapshot(signature);
    stream.feed(&canonical[..canonical.len() - 1]).unwrap();
    assert_eq!(v.finish_snapshot(stream), Err(SnapshotError::NotCanonical));
    // Odd or non-hex text.
    let mut stream = v.begin_snapshot(signature);
    assert_eq!(stream.feed_hex("4b4"), Err(SnapshotError::NotCanonical));
    assert_eq!(v.finish_snapshot(stream), Err(SnapshotError::NotCanonical));
    assert_eq!(format!("{v:?}"), before);
}

#[test]
fn a_streamed_signature_check_is_as_strict_as_verify_strict() {
    use crate::decision::stream_verifier;
    use ed25519_dalek::{Signature, VerifyingKey};
    let (sk, _) = issuer(9);
    let vk = sk.verifying_key();
    let message = b"KGS a snapshot";
    let good = sk.sign(message).to_bytes();
    let mut check = stream_verifier(&vk, &good).unwrap();
    check.update(&message[..5]);
    check.update(&message[5..]);
    assert!(check.finalize_and_verify().is_ok());
    let mut check = stream_verifier(&vk, &good).unwrap();
    check.update(b"KGS another");
    assert!(check.finalize_and_verify().is_err());
    // R of small order (the identity point): verify_strict refuses it
    // whatever the rest; the stream verifier alone would go on hashing.
    let mut small = good;
    small[..32].copy_from_slice(&{
        let mut y = [0u8; 32];
        y[0] = 1;
        y
    });
    assert!(
        vk.verify_strict(message, &Signature::from_bytes(&small))
            .is_err()
    );
    assert!(vk.verify_stream(&Signature::from_bytes(&small)).is_ok());
    assert!(stream_verifier(&vk, &small).is_none());
    // An R that is no point at all.
    let not_a_point = (2u8..=255)
        .map(|b| {
            let mut y = [0u8; 32];
            y[0] = b;
            y
        })
        .find(|y| VerifyingKey::from_bytes(y).is_err())
        .unwrap();
    let mut bad = good;
    bad[..32].copy_from_slice(&not_a_point);
    assert!(
        vk.verify_strict(message, &Signature::from_bytes(&bad))
            .is_err()
    );
    assert!(stream_verifier(&vk, &bad).is_none());
    // A public key of small order.
    let weak = VerifyingKey::from_bytes(&small[..32].try_into().unwrap()).unwrap();
    assert!(weak.is_weak());
    assert!(stream_verifier(&weak, &good).is_none());
    // A scalar out of range: refused by both.
    let mut high = good;
    high[63] |= 0xf0;
    assert!(
        vk.verify_strict(message, &Signature::from_bytes(&high))
            .is_err()
    );
    assert!(stream_verifier(&vk, &high).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// However a file (whole or damaged) is cut into pieces, the stream
    /// answers what loading the whole file answers, and holds the same.
    #[test]
    fn pieces_never_change_the_answer(
        edit in (any::<usize>(), any::<u8>(), 0u8..4),
        sizes in proptest::collection::vec(1usize..300, 1..6),
    ) {
        let f = fixture_for_snapshots();
        let mut file = f.0.clone();
        let (pos, byte, op) = edit;
        let pos = pos % file.len();
        match op {
            0 => file[pos] ^= byte.max(1),
            1 => file.truncate(pos),
            2 => file.insert(pos, byte),
            _ => {}
        }
        let mut whole = Validator::new(core::slice::from_ref(&f.1));
        let mut pieces = Validator::new(core::slice::from_ref(&f.1));
        let a = whole.load_snapshot(&file);
        let b = if file.len() < 64 { Err(SnapshotError::NotCanonical) } else { load_in_pieces(&mut pieces, &file, &sizes) };
        prop_assert_eq!(a, b);
        prop_assert_eq!(format!("{whole:?}"), format!("{pieces:?}"));
        if op == 3 {
            prop_assert!(a.is_ok());
        }
    }
}

/// The fixture's full snapshot file and its issuer key, made once.
fn fixture_for_snapshots() -> &'static (Vec<u8>, IssuerKey) {
    static ONCE: std::sync::OnceLock<(Vec<u8>, IssuerKey)> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let f = fixture();
        let file = fixture_snapshot(&f, 7, None).1;
        (file, f.issuer.1.clone())
    })
}

#[test]
fn a_snapshot_written_fact_by_fact_is_the_encoded_snapshot() {
    let f = fixture();
    for (name, snap, _) in fixture_snapshots(&f) {
        let mut w =
            SnapshotWriter::new(&snap.issuer_key_id, snap.sequence, snap.base, snap.made_at);
        for o in &snap.organizations {
            w.add(&o.encode().unwrap()).unwrap();
        }
        for r in &snap.keys {
            w.add(&r.encode().unwrap()).unwrap();
        }
        for p in &snap.projects {
            w.add(&p.encode().unwrap()).unwrap();
        }
        for t in &snap.tombstones {
            w.add(&t.encode().unwrap()).unwrap();
        }
        assert_eq!(w.finish(), snap.encode(), "{name}");
    }
    // Nothing at all: four empty lists.
    let empty = SnapshotWriter::new(&f.issuer.1.id, 3, None, T0)
        .finish()
        .unwrap();
    let back = Snapshot::decode(&empty).unwrap();
    assert_eq!(
        (back.sequence, back.info().keys, back.info().organizations),
        (3, 0, 0)
    );
}

#[test]
fn a_snapshot_writer_produces_nothing_a_validator_would_refuse() {
    let f = fixture();
    let (snap, _) = fixture_snapshot(&f, 7, None);
    let id = &f.issuer.1.id;
    let key = |i: usize| snap.keys[i].encode().unwrap();
    let project = snap.projects[0].encode().unwrap();
    let tomb = snap.tombstones[0].encode().unwrap();
    // A kind after a later kind: refused at once, and for good.
    let mut w = SnapshotWriter::new(id, 8, None, T0);
    w.add(&project).unwrap();
    assert_eq!(w.add(&key(0)), Err(RecordError::NotCanonical));
    assert_eq!(w.add(&tomb), Err(RecordError::NotCanonical));
    assert_eq!(w.finish(), Err(RecordError::NotCanonical));
    // Ids out of order, the same id twice: refused at the end.
    for order in [[1, 0], [0, 0]] {
        let mut w = SnapshotWriter::new(id, 8, None, T0);
        for i in order {
            w.add(&key(i)).unwrap();
        }
        assert_eq!(w.finish(), Err(RecordError::NotCanonical), "{order:?}");
    }
    // A tombstone of a key it carries.
    let dead = Tombstone {
        id: snap.keys[0].id.clone(),
        organization: Some(snap.keys[0].organization.clone()),
        deleted_at: T0,
        last_version: 1,
    };
    let mut w = SnapshotWriter::new(id, 8, None, T0);
    w.add(&key(0)).unwrap();
    w.add(&dead.encode().unwrap()).unwrap();
    assert_eq!(w.finish(), Err(RecordError::NotCanonical));
    // Bytes with a fact's magic that are not that fact; no known magic.
    let mut w = SnapshotWriter::new(id, 8, None, T0);
    let mut broken = key(0);
    broken.truncate(20);
    w.add(&broken).unwrap();
    assert_eq!(w.finish(), Err(RecordError::NotCanonical));
    let mut w = SnapshotWriter::new(id, 8, None, T0);
    assert_eq!(w.add(b"XYZ1"), Err(RecordError::NotCanonical));
    // A bad header: an issuer key id that is not one, a base not below the
    // sequence.
    assert_eq!(
        SnapshotWriter::new("issuer", 8, None, T0).finish(),
        Err(RecordError::NotCanonical)
    );
    assert_eq!(
        SnapshotWriter::new(&"a".repeat(70_000), 8, None, T0).finish(),
        Err(RecordError::NotCanonical)
    );
    assert_eq!(
        SnapshotWriter::new(id, 8, Some(8), T0).finish(),
        Err(RecordError::NotCanonical)
    );
}

#[test]
fn the_largest_key_record_is_shorter_than_the_longest_fact_a_snapshot_takes() {
    let mut projects: Vec<String> = (0..crate::record::MAX_SELECTED)
        .map(|i| format!("{i:064}"))
        .collect();
    projects.sort();
    let record = KeyRecord {
        id: "zzzzzzzzzzz".into(),
        organization: "o".repeat(63),
        name: "\u{1F511}".repeat(100),
        level: KeyLevel::Organization,
        scopes: Scope::ALL.to_vec(),
        access: ProjectAccess::Selected(projects),
        created_at: u64::MAX / 2,
        expiry: ExpiryPolicy::Days(90),
        expires_at: Some(u64::MAX / 2 + 90 * 86_400),
        status: KeyStatus::Disabled,
        key_hash: [0xff; 32],
        version: u64::MAX,
        rotated_from: Some("yyyyyyyyyyy".into()),
        rotated_to: Some("xxxxxxxxxxx".into()),
    };
    record.check().unwrap();
    let bytes = record.encode().unwrap();
    assert!(bytes.len() > 60_000, "{}", bytes.len());
    assert!(
        bytes.len() < snapshot::MAX_FACT / 2 + 8_000,
        "{}",
        bytes.len()
    );
    // It loads, in pieces smaller than itself.
    let f = fixture();
    let (mut snap, _) = fixture_snapshot(&f, 7, None);
    snap.keys.push(record);
    let file = sign_snapshot(&f.issuer.0, &snap);
    let mut v = Validator::new(core::slice::from_ref(&f.issuer.1));
    assert_eq!(
        load_in_pieces(&mut v, &file, &[4096]).map(|i| i.keys),
        Ok(11)
    );
}

#[test]
fn a_delta_applies_only_on_its_base() {
    let f = fixture();
    let (snap, file) = fixture_snapshot(&f, 7, None);
    let trusted = core::slice::from_ref(&f.issuer.1);
    let mut v = Validator::new(trusted);
    // A delta before any snapshot has no base to apply on.
    let org_all = snap
        .keys
        .iter()
        .find(|r| r.name == "fixture 10")
        .unwrap()
        .clone();
    let disabled = org_all.with_status(KeyStatus::Disabled).unwrap();
    let delta = Snapshot {
        sequence: 9,
        base: Some(7),
        made_at: T0 + 60,
        keys: vec![disabled.clone()],
        projects: Vec::new(),
        tombstones: Vec::new(),
        ..snap.clone()
    };
    let delta_file = sign_snapshot(&f.issuer.0, &delta);
    assert_eq!(
        v.load_snapshot(&delta_file),
        Err(SnapshotError::BaseMismatch {
            held: None,
            base: 7
        })
    );
    v.load_snapshot(&file).unwrap();
    let key = f
        .keys
        .iter()
        .find(|k| k.0 == "org-all-30d")
        .unwrap()
        .2
        .clone();
    let allowed = v.authorize(&key, "prj_alpha", Scope::TriggerWorkflows, T0 + 100);
    assert_eq!(allowed.map(|a| a.record_version), Ok(1));
    let info = v.load_snapshot(&delta_file).unwrap();
    assert_eq!((info.sequence, info.base, info.keys), (9, Some(7), 1));
    assert_eq!(
        v.authorize(&key, "prj_alpha", Scope::TriggerWorkflows, T0 + 100),
        Err(DenyReason::Disabled)
    );
    assert_eq!((v.sequence(), v.snapshot_time()), (Some(9), Some(T0 + 60)));
    // The same delta again: its base is no longer held.
    assert_eq!(
        v.load_snapshot(&delta_file),
        Err(SnapshotError::BaseMismatch {
            held: Some(9),
            base: 7
        })
    );
    // A delta deleting the key: its tombstone removes it.
    let tomb = make_tombstone(&org_all.id, Some(&disabled), T0 + 70).unwrap();
    let delete = Snapshot {
        sequence: 10,
        base: Some(9),
        made_at: T0 + 70,
        keys: Vec::new(),
        projects: Vec::new(),
        tombstones: vec![tomb],
        ..snap.clone()
    };
    v.load_snapshot(&sign_snapshot(&f.issuer.0, &delete))
        .unwrap();
    assert_eq!(
        v.authorize(&key, "prj_alpha", Scope::TriggerWorkflows, T0 + 100),
        Err(DenyReason::UnknownKey)
    );
    // A newer full snapshot replaces everything held.
    let (_, newer) = fixture_snapshot(&f, 11, None);
    v.load_snapshot(&newer).unwrap();
    assert_eq!(v.sequence(), Some(11));
    // A delta whose base is above its sequence is not canonical.
    let backwards = Snapshot {
        sequence: 11,
        base: Some(12),
        ..delta
    };
    assert_eq!(backwards.encode(), Err(RecordError::NotCanonical));
}

// ------------------------------------------------------------ organizations

#[test]
fn organizations_are_checked_encoded_and_amended() {
    let org = register_organization("acme", "  Acme Corp  ", T0).unwrap();
    assert_eq!(
        (org.name.as_str(), org.key_policy, org.version),
        ("Acme Corp", KeyPolicy::default(), 1)
    );
    assert_eq!(
        register_organization("Acme", "x", T0),
        Err(RecordError::BadOrganization)
    );
    assert_eq!(
        register_organization("acme", "a\u{202e}b", T0),
        Err(RecordError::NameControlCharacter)
    );
    let strict = org
        .amend(
            KeyPolicy {
                expiry: ExpiryRule::AtMost(30),
            },
            None,
        )
        .unwrap();
    assert_eq!((strict.version, strict.name.as_str()), (2, "Acme Corp"));
    for bad in [6, 91, 0] {
        assert_eq!(
            org.amend(
                KeyPolicy {
                    expiry: ExpiryRule::AtMost(bad)
                },
                None
            ),
            Err(RecordError::MaxExpiryOutOfRange(bad))
        );
    }
    // Every form round-trips, and only its canonical bytes decode.
    let required = strict
        .amend(
            KeyPolicy {
                expiry: ExpiryRule::Required,
            },
            Some("Acme"),
        )
        .unwrap();
    let gone = required.delete(T0 + 5).unwrap();
    for o in [&org, &strict, &required, &gone] {
        let bytes = o.encode().unwrap();
        assert_eq!(&bytes[..4], b"KGO\x01");
        assert_eq!(Organization::decode(&bytes).as_ref(), Ok(o));
        assert_eq!(Body::decode(&bytes), Ok(Body::Organization(o.clone())));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Organization::decode(&longer),
            Err(RecordError::NotCanonical)
        );
        assert_eq!(
            Organization::decode(&bytes[..bytes.len() - 1]),
            Err(RecordError::NotCanonical)
        );
    }
    // The rule tag after the name: 3 is no rule; at-most 5 days is out of range.
    let mut bad_tag = org.encode().unwrap();
    let at = 4 + 2 + 4 + 2 + "Acme Corp".len();
    assert_eq!(bad_tag[at], 0);
    bad_tag[at] = 3;
    assert_eq!(
        Organization::decode(&bad_tag),
        Err(RecordError::NotCanonical)
    );
    let mut five = strict.encode().unwrap();
    five[at + 2] = 5;
    assert_eq!(
        Organization::decode(&five),
        Err(RecordError::MaxExpiryOutOfRange(5))
    );
    // A deleted organization changes no more.
    assert_eq!(gone.delete(T0 + 6), Err(RecordError::OrganizationDeleted));
    assert_eq!(
        gone.amend(KeyPolicy::default(), None),
        Err(RecordError::OrganizationDeleted)
    );
}

#[test]
fn a_key_policy_holds_at_creation_and_at_use() {
    let never = create(
        60,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let d30 = create(
        61,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let d7 = create(
        62,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(7),
    );
    let with = |expiry| KeyPolicy { expiry };
    let optional = with(ExpiryRule::Optional);
    let required = with(ExpiryRule::Required);
    let at_most_7 = with(ExpiryRule::AtMost(7));
    let at_most_30 = with(ExpiryRule::AtMost(30));
    let p = |k: &Made, policy: KeyPolicy| policy.permits(k.record.created_at, k.record.expires_at);
    assert_eq!(p(&never, optional), Ok(()));
    assert_eq!(p(&never, required), Err(RecordError::ExpiryRequired));
    assert_eq!(p(&never, at_most_30), Err(RecordError::ExpiryRequired));
    assert_eq!(p(&d30, required), Ok(()));
    assert_eq!(p(&d30, at_most_30), Ok(()));
    assert_eq!(p(&d30, at_most_7), Err(RecordError::ExpiryExceedsPolicy(7)));
    assert_eq!(p(&d7, at_most_7), Ok(()));
    // The same rule for a creation form.
    assert_eq!(
        at_most_7.permits_expiry(ExpiryPolicy::Days(8)),
        Err(RecordError::ExpiryExceedsPolicy(7))
    );
    assert_eq!(
        required.permits_expiry(ExpiryPolicy::Never),
        Err(RecordError::ExpiryRequired)
    );
    assert_eq!(at_most_7.permits_expiry(ExpiryPolicy::Days(7)), Ok(()));
    // A 30-day key rotated away with one hour of grace after a day lives
    // 25 hours: it keeps a 7-day policy from then on.
    let retired = d30.record.retire("AAAAAAAAAAA", T0 + DAY, 3600).unwrap();
    assert_eq!(
        at_most_7.permits(retired.created_at, retired.expires_at),
        Ok(())
    );

    // At use: the organization's current policy, through evaluate and a
    // validator, after the expiry checks.
    let (sk, ik) = issuer(1);
    let trusted = TrustedIssuers::new(core::slice::from_ref(&ik));
    let strict = organization("acme", ExpiryRule::AtMost(7));
    let strict_s = sign_body(&sk, &Body::Organization(strict.clone()));
    for (k, expect) in [
        (&never, Some(DenyReason::LifetimeExceedsPolicy)),
        (&d30, Some(DenyReason::LifetimeExceedsPolicy)),
        (&d7, None),
    ] {
        let q = req(&k.key, "acme", "prj_a", T0 + 1);
        let mut evidence = Evidence {
            key: Some(sign(&sk, &k.record)),
            tombstone: None,
            project: Some(q.registration.clone()),
            organization: Some(strict_s.clone()),
        };
        assert_eq!(
            evaluate(&q.request, &evidence, &trusted).deny_reason(),
            expect
        );
        let mut v = Validator::new(core::slice::from_ref(&ik));
        v.load(evidence.key.as_ref().unwrap()).unwrap();
        v.load(&q.registration).unwrap();
        v.load(&strict_s).unwrap();
        assert_eq!(v.check(&q.request).deny_reason(), expect);
        // Lifting the policy (a newer version) lets every one of them in.
        let lifted = strict.amend(KeyPolicy::default(), None).unwrap();
        let lifted_s = sign_body(&sk, &Body::Organization(lifted));
        assert_eq!(v.load(&lifted_s), Ok(LoadOutcome::Replaced));
        assert!(matches!(v.check(&q.request), Decision::Allow(_)));
        // ...and the older, stricter one never comes back over it.
        assert_eq!(v.load(&strict_s), Ok(LoadOutcome::Stale));
        evidence.organization = Some(lifted_s);
        assert!(matches!(
            evaluate(&q.request, &evidence, &trusted),
            Decision::Allow(_)
        ));
    }
    // A deleted organization stays deleted in a validator.
    let q = req(&d7.key, "acme", "prj_a", T0 + 1);
    let mut v = Validator::new(core::slice::from_ref(&ik));
    v.load(&sign(&sk, &d7.record)).unwrap();
    v.load(&q.registration).unwrap();
    let live = organization("acme", ExpiryRule::Optional);
    let gone = live.delete(T0).unwrap();
    v.load(&sign_body(&sk, &Body::Organization(gone))).unwrap();
    let mut revived = live;
    revived.version = 9;
    assert_eq!(
        v.load(&sign_body(&sk, &Body::Organization(revived))),
        Ok(LoadOutcome::Stale)
    );
    assert_eq!(
        v.check(&q.request).deny_reason(),
        Some(DenyReason::OrganizationDeleted)
    );
}

#[test]
fn a_snapshot_of_format_1_is_refused() {
    let f = fixture();
    let (_, file) = fixture_snapshot(&f, 7, None);
    let mut old = file[..file.len() - 64].to_vec();
    assert_eq!(old[3], 2);
    old[3] = 1;
    assert_eq!(Snapshot::decode(&old), Err(RecordError::NotCanonical));
}
