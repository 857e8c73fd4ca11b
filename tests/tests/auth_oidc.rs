//! Identity, consent and audit against a real OpenID provider: `oidc-provider` on Node issues
//! the access tokens (`tests/idp/idp.mjs`), the real `naast serve` process trusts it, and a
//! tonic client calls as the family, their supporter, a care professional, a PGO platform, an
//! evaluator and an administrator. Every refusal comes with its exact gRPC code and an audit
//! record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::client::Signed;
use naast_proto::pb;
use naast_proto::pb::audit_service_client::AuditServiceClient;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Idp, Server, signed};
use std::time::Duration;
use tonic::Code;

async fn households(server: &Server, token: &str) -> HouseholdServiceClient<Signed> {
    HouseholdServiceClient::new(signed(&server.url(), token).await)
}

async fn consent(server: &Server, token: &str) -> ConsentServiceClient<Signed> {
    ConsentServiceClient::new(signed(&server.url(), token).await)
}

async fn audit(server: &Server, token: &str) -> AuditServiceClient<Signed> {
    AuditServiceClient::new(signed(&server.url(), token).await)
}

/// `GetCaller` with `authorization: <header>` (`None`: no header at all).
async fn caller_with_header(
    server: &Server,
    header: Option<&str>,
) -> Result<pb::GetCallerResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ConsentServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::GetCallerRequest {});
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    client.get_caller(request).await.map(|r| r.into_inner())
}

/// Every audit record, as the administrator finds them.
async fn all_audit_records(server: &Server, admin: &str) -> Vec<pb::AuditRecord> {
    naast_tests::search_audit(signed(&server.url(), admin).await, Default::default()).await
}

fn part(token: &str, index: usize) -> &str {
    token.split('.').nth(index).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_every_refusal_is_recorded() {
    let idp = Idp::start();
    let other_idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let server =
        naast_tests::server_trusting(dir.path(), &idp, &["--jwks-min-refresh-seconds", "0"]);

    // A good token: the claims become the caller.
    let supporter = idp.token("ondersteuner").await;
    let me = caller_with_header(&server, Some(&format!("Bearer {supporter}")))
        .await
        .unwrap();
    assert_eq!(me.role, pb::PrincipalRole::Supporter as i32);
    assert_eq!(me.organisation_id, "MEE-0001");
    assert_eq!(me.client_id, "ondersteuner");
    let identity = me.identity.unwrap();
    assert_eq!(
        (identity.issuer.as_str(), identity.subject.as_str()),
        (idp.issuer.as_str(), "ondersteuner-1")
    );

    // Health needs no token.
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The negative matrix: each refused with UNAUTHENTICATED and a reason.
    let short = idp.token_for("ouder-a", "https://naast.test/short").await;
    let future = idp.token("toekomst").await;
    let other_audience = idp.token_for("ouder-a", "https://other.test/api").await;
    let unknown_issuer = other_idp.token("ouder-a").await;
    let good = idp.token("ouder-a").await;
    let mut forged_signature = part(&good, 2).chars().collect::<Vec<_>>();
    let middle = forged_signature.len() / 2;
    forged_signature[middle] = if forged_signature[middle] == 'A' {
        'B'
    } else {
        'A'
    };
    let bad_signature = format!(
        "{}.{}.{}",
        part(&good, 0),
        part(&good, 1),
        forged_signature.into_iter().collect::<String>()
    );
    // The same claims, unsigned, claiming `alg: none`.
    let none_header = base64url(r#"{"alg":"none","typ":"at+jwt"}"#);
    let alg_none = format!("{none_header}.{}.", part(&good, 1));
    // Claims of another citizen, with ouder-a's valid signature: the signature no longer fits.
    let swapped = format!(
        "{}.{}.{}",
        part(&good, 0),
        part(&idp.token("ouder-b").await, 1),
        part(&good, 2)
    );
    tokio::time::sleep(Duration::from_millis(2100)).await; // the short token expires
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no bearer token"),
        ("not bearer", Some(format!("Basic {good}")), "malformed"),
        ("not a JWT", Some("Bearer not-a-jwt".into()), "malformed"),
        ("expired", Some(format!("Bearer {short}")), "expired"),
        (
            "not yet valid",
            Some(format!("Bearer {future}")),
            "not valid before",
        ),
        (
            "wrong audience",
            Some(format!("Bearer {other_audience}")),
            "audience",
        ),
        (
            "unknown issuer",
            Some(format!("Bearer {unknown_issuer}")),
            "not trusted",
        ),
        (
            "bad signature",
            Some(format!("Bearer {bad_signature}")),
            "signature",
        ),
        (
            "alg none",
            Some(format!("Bearer {alg_none}")),
            "no signature",
        ),
        (
            "swapped claims",
            Some(format!("Bearer {swapped}")),
            "signature",
        ),
    ];
    for (what, header, reason) in &cases {
        let refused = caller_with_header(&server, header.as_deref())
            .await
            .expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert!(
            refused.message().to_lowercase().contains(reason),
            "{what}: {:?} does not say {reason:?}",
            refused.message()
        );
    }

    // Key rotation: the provider signs with a key naast has not seen; naast fetches the keys
    // again and accepts the token.
    idp.rotate_keys().await;
    let rotated = idp.token("ouder-a").await;
    assert_ne!(part(&rotated, 0), part(&good, 0), "a new key id");
    let me = caller_with_header(&server, Some(&format!("Bearer {rotated}")))
        .await
        .unwrap();
    assert_eq!(me.identity.unwrap().subject, "burger-ouder-a");
    // Tokens of the old key, still published, keep working.
    caller_with_header(&server, Some(&format!("Bearer {good}")))
        .await
        .unwrap();

    // Every refusal is in the audit log, with no user (nobody was identified) and the reason.
    let admin = idp.token("beheerder").await;
    let records = all_audit_records(&server, &admin).await;
    let refused: Vec<&pb::AuditRecord> = records
        .iter()
        .filter(|r| r.outcome == pb::AuditOutcome::Denied as i32)
        .collect();
    assert_eq!(refused.len(), cases.len(), "{refused:#?}");
    for record in &refused {
        assert!(record.user.is_none());
        assert_eq!(record.operation, "/naast.v1.ConsentService/GetCaller");
        assert!(record.outcome_reason.starts_with("not authenticated"));
        assert!(record.network_access_point.starts_with("127.0.0.1:"));
    }
    // The allowed calls are there too, with their users; the search itself is recorded.
    assert!(records.iter().any(|r| {
        r.outcome == pb::AuditOutcome::Allowed as i32
            && r.user.as_ref().is_some_and(|u| u.subject == "beheerder-1")
            && r.operation == "/naast.v1.AuditService/SearchAuditLog"
    }));
    // Only administrators search the audit log.
    let refused = audit(&server, &supporter)
        .await
        .search_audit_log(pb::SearchAuditLogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

fn base64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn note(household: &str, text: &str, domain: pb::LifeDomain) -> pb::CreateNoteRequest {
    pb::CreateNoteRequest {
        household_id: household.into(),
        text: text.into(),
        life_domains: vec![domain as i32],
        ..Default::default()
    }
}

async fn timeline(
    api: &mut HouseholdServiceClient<Signed>,
    household: &str,
) -> Result<Vec<pb::TimelineEntry>, tonic::Status> {
    api.list_timeline_entries(pb::ListTimelineEntriesRequest {
        household_id: household.into(),
        page_size: 1000,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_family_decides_who_sees_what_and_sees_who_looked() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let server =
        naast_tests::server_trusting(dir.path(), &idp, &["--jwks-min-refresh-seconds", "0"]);
    let parent = idp.token("ouder-a").await;
    let stranger = idp.token("ouder-b").await;
    let supporter = idp.token("ondersteuner").await;
    let professional = idp.token("zorgverlener").await;
    let evaluator = idp.token("evaluator").await;
    let admin = idp.token("beheerder").await;

    // The parent registers the household and so owns it.
    let mut family = households(&server, &parent).await;
    let household = family
        .create_household(pb::CreateHouseholdRequest {
            name: "Familie de Vries".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    let child = family
        .create_member(pb::CreateMemberRequest {
            household_id: household.clone(),
            details: Some(pb::MemberDetails {
                name: "Sam".into(),
                role: pb::MemberRole::Client as i32,
                birth_date: "2010-03-14".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .member_id;
    let contact = |name: &str| pb::CreateContactRequest {
        household_id: household.clone(),
        details: Some(pb::ContactDetails {
            kind: pb::ContactKind::CareProvider as i32,
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ours = family
        .create_contact(contact("Zorg aan Huis"))
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let theirs = family
        .create_contact(contact("Logeerhuis De Linde"))
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    // The professional's organisation acts as the first provider.
    let mut family_consent = consent(&server, &parent).await;
    family_consent
        .link_identity(pb::LinkIdentityRequest {
            household_id: household.clone(),
            party: Some(pb::link_identity_request::Party::ContactId(ours.clone())),
            organisation_id: "AGB-01234567".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let goal = |title: &str, domain: pb::LifeDomain| pb::CreateGoalRequest {
        household_id: household.clone(),
        owner_member_id: child.clone(),
        title: title.into(),
        life_domains: vec![domain as i32],
        ..Default::default()
    };
    let care_goal = family
        .create_goal(goal("zelf douchen", pb::LifeDomain::PhysicalHealth))
        .await
        .unwrap()
        .into_inner()
        .goal_id;
    family
        .create_goal(goal("een logeerplek", pb::LifeDomain::Housing))
        .await
        .unwrap();
    let agreement = |title: &str, provider: &str, goals: Vec<String>| pb::ProposeAgreementRequest {
        household_id: household.clone(),
        terms: Some(pb::AgreementTerms {
            title: title.into(),
            parties: vec![pb::Party {
                party: Some(pb::party::Party::ContactId(provider.into())),
            }],
            responsible_contact_id: provider.into(),
            funding_domain: pb::FundingDomain::Wlz as i32,
            start_date: "2026-01-01".into(),
            goal_ids: goals,
            ..Default::default()
        }),
        ..Default::default()
    };
    let our_agreement = family
        .propose_agreement(agreement(
            "persoonlijke verzorging",
            &ours,
            vec![care_goal.clone()],
        ))
        .await
        .unwrap()
        .into_inner()
        .agreement_id;
    let their_agreement = family
        .propose_agreement(agreement("logeren", &theirs, Vec::new()))
        .await
        .unwrap()
        .into_inner()
        .agreement_id;

    // Another household's member, an evaluator and the administrator see nothing of it.
    for (who, token) in [
        ("a member of another household", &stranger),
        ("an evaluator", &evaluator),
        ("the administrator", &admin),
    ] {
        let mut api = households(&server, token).await;
        let refused = timeline(&mut api, &household).await.expect_err(who);
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}");
        let refused = api
            .get_household(pb::GetHouseholdRequest {
                household_id: household.clone(),
                min_position: 0,
                ..Default::default()
            })
            .await
            .expect_err(who);
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}");
        let refused = api
            .create_note(note(&household, "ingebroken", pb::LifeDomain::Safety))
            .await
            .expect_err(who);
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}");
    }

    // The professional is party to one agreement: sees it and the goal it serves, nothing
    // else; accepts it, but not the other one.
    let mut provider = households(&server, &professional).await;
    let seen = provider
        .list_agreements(pb::ListAgreementsRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreements;
    let seen: Vec<String> = seen
        .into_iter()
        .map(|a| a.agreement.unwrap().agreement_id)
        .collect();
    assert_eq!(seen, std::slice::from_ref(&our_agreement));
    let goals: Vec<String> = provider
        .list_goals(pb::ListGoalsRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goals
        .into_iter()
        .map(|g| g.goal_id)
        .collect();
    assert_eq!(goals, std::slice::from_ref(&care_goal));
    let refused = provider
        .accept_agreement(pb::AcceptAgreementRequest {
            household_id: household.clone(),
            agreement_id: their_agreement.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    provider
        .accept_agreement(pb::AcceptAgreementRequest {
            household_id: household.clone(),
            agreement_id: our_agreement.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = timeline(&mut provider, &household).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The supporter asks to read the housing part of the timeline; the family grants it.
    let mut supporter_consent = consent(&server, &supporter).await;
    let request = supporter_consent
        .request_access(pb::RequestAccessRequest {
            household_id: household.clone(),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                life_domains: vec![pb::LifeDomain::Housing as i32],
                ..Default::default()
            }),
            reason: "meedenken over logeeropvang".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_request_id;
    let listed = family_consent
        .list_access_grants(pb::ListAccessGrantsRequest {
            household_id: household.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let asked = listed
        .requests
        .iter()
        .find(|r| r.access_request_id == request)
        .unwrap();
    assert_eq!(asked.status, pb::AccessRequestStatus::Open as i32);
    let grant = family_consent
        .grant_access(pb::GrantAccessRequest {
            household_id: household.clone(),
            grantee: asked.requester.clone(),
            terms: asked.terms.clone(),
            access_request_id: request.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    family
        .create_note(note(
            &household,
            "logeerhuis bekeken",
            pb::LifeDomain::Housing,
        ))
        .await
        .unwrap();
    family
        .create_note(note(
            &household,
            "bloeddruk gemeten",
            pb::LifeDomain::PhysicalHealth,
        ))
        .await
        .unwrap();
    let mut reader = households(&server, &supporter).await;
    let entries = timeline(&mut reader, &household).await.unwrap();
    assert!(!entries.is_empty());
    for entry in &entries {
        assert!(
            entry
                .life_domains
                .contains(&(pb::LifeDomain::Housing as i32)),
            "outside the grant: {entry:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e.summary.contains("logeerhuis bekeken"))
    );
    assert!(!entries.iter().any(|e| e.summary.contains("bloeddruk")));
    // Writing was not granted.
    let refused = reader
        .create_note(note(
            &household,
            "van de ondersteuner",
            pb::LifeDomain::Housing,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Mid-stream: the supporter follows the timeline; a revocation ends the stream at once.
    let mut stream = reader
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: household.clone(),
            start_revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    family
        .create_note(note(
            &household,
            "gezondheid: griepprik",
            pb::LifeDomain::PhysicalHealth,
        ))
        .await
        .unwrap();
    family
        .create_note(note(
            &household,
            "wonen: aanpassing badkamer",
            pb::LifeDomain::Housing,
        ))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .entry
        .unwrap();
    assert!(
        first.summary.contains("aanpassing badkamer"),
        "the health note is skipped: {first:?}"
    );
    family_consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: household.clone(),
            grant_id: grant.clone(),
            reason: "niet meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    family
        .create_note(note(
            &household,
            "wonen: na de intrekking",
            pb::LifeDomain::Housing,
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    let refused = timeline(&mut reader, &household).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A PGO platform, authenticated with private_key_jwt, acts for the parent: only once the
    // family allowed the platform, and only for a member of this household.
    let platform = idp.system_token("pgo-platform", "burger-ouder-a").await;
    let mut pgo = households(&server, &platform).await;
    let refused = timeline(&mut pgo, &household).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    family_consent
        .grant_access(pb::GrantAccessRequest {
            household_id: household.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Platform(pb::PlatformClient {
                    issuer: idp.issuer.clone(),
                    client_id: "pgo-platform".into(),
                })),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                until: "2099-12-31".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let through_pgo = timeline(&mut pgo, &household).await.unwrap();
    assert!(through_pgo.iter().any(|e| e.summary.contains("bloeddruk")));
    let for_stranger = idp.system_token("pgo-platform", "burger-ouder-b").await;
    let refused = timeline(&mut households(&server, &for_stranger).await, &household)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Who looked at our data: the family's own view of the audit log.
    let mut family_audit = audit(&server, &parent).await;
    let log = family_audit
        .list_access_log(pb::ListAccessLogRequest {
            household_id: household.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let by = |subject: &str| {
        log.iter()
            .filter(|r| r.user.as_ref().is_some_and(|u| u.subject == subject))
            .collect::<Vec<_>>()
    };
    // The stranger's attempts, refused.
    let stranger_records = by("burger-ouder-b");
    assert_eq!(stranger_records.len(), 3);
    assert!(
        stranger_records
            .iter()
            .all(|r| r.outcome == pb::AuditOutcome::Denied as i32 && r.basis.is_empty())
    );
    // The supporter's reads, on the grant; the stream's end.
    let supporter_records = by("ondersteuner-1");
    assert!(supporter_records.iter().any(|r| {
        r.operation == "/naast.v1.HouseholdService/ListTimelineEntries"
            && r.action == pb::AuditAction::Read as i32
            && r.basis == [format!("grant:{grant}")]
            && r.user.as_ref().unwrap().organisation_id == "MEE-0001"
    }));
    assert!(supporter_records.iter().any(|r| {
        r.outcome == pb::AuditOutcome::Denied as i32 && r.outcome_reason.starts_with("stream ended")
    }));
    // The professional, as a party.
    assert!(by("zorgverlener-1").iter().any(|r| {
        r.operation == "/naast.v1.HouseholdService/AcceptAgreement"
            && r.outcome == pb::AuditOutcome::Allowed as i32
            && r.basis == [format!("party:{ours}")]
            && r.object_ids == [our_agreement.clone()]
    }));
    // The platform, on behalf of the parent.
    assert!(log.iter().any(|r| {
        r.user
            .as_ref()
            .is_some_and(|u| u.role == pb::PrincipalRole::Pgo as i32 && u.requestor)
            && r.responsible
                .as_ref()
                .is_some_and(|u| u.subject == "burger-ouder-a" && !u.requestor)
            && r.outcome == pb::AuditOutcome::Allowed as i32
            && r.source_system == "pgo-platform"
    }));
    // Reading the access log is itself recorded, and only the family may.
    let refused = audit(&server, &supporter)
        .await
        .list_access_log(pb::ListAccessLogRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let again = family_audit
        .list_access_log(pb::ListAccessLogRequest {
            household_id: household.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(again.iter().any(|r| {
        r.operation == "/naast.v1.AuditService/ListAccessLog"
            && r.user
                .as_ref()
                .is_some_and(|u| u.subject == "burger-ouder-a")
    }));
    assert!(again.iter().any(|r| {
        r.operation == "/naast.v1.AuditService/ListAccessLog"
            && r.outcome == pb::AuditOutcome::Denied as i32
            && r.user
                .as_ref()
                .is_some_and(|u| u.subject == "ondersteuner-1")
    }));

    // The consent history is on the family's timeline.
    let entries = timeline(&mut family, &household).await.unwrap();
    for event in [
        "IdentityLinked",
        "AccessRequested",
        "AccessGranted",
        "AccessRevoked",
    ] {
        assert!(
            entries.iter().any(|e| e.event_type == event),
            "{event} on the timeline"
        );
    }
}

/// A node's first calls come in a burst (a load balancer sends it traffic the moment it is up):
/// the ones that arrive while the issuer's keys are being fetched wait for them, and none is
/// refused for lack of keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_calls_waits_for_the_keys_being_fetched() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let server = naast_tests::server_trusting(dir.path(), &idp, &[]);
    let supporter = idp.token("ondersteuner").await;
    // Connected first, so the calls reach the server together.
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(signed(&server.url(), &supporter).await);
    }
    let mut calls = tokio::task::JoinSet::new();
    for channel in clients {
        calls.spawn(async move {
            ConsentServiceClient::new(channel)
                .get_caller(pb::GetCallerRequest {})
                .await
        });
    }
    while let Some(answer) = calls.join_next().await {
        let me = answer
            .unwrap()
            .unwrap_or_else(|e| panic!("a first call refused: {e:?}"))
            .into_inner();
        assert_eq!(me.client_id, "ondersteuner");
    }
}
