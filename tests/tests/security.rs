//! The security review's findings against the real `naast serve --dev`: reads decided on one
//! state and read from another, subscriptions outliving their token, files other users can
//! read, organisation claims on the wrong roles, and refusals that tell who belongs to a
//! household.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use std::time::Duration;
use tonic::Code;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;

/// The supporter asks for `scopes` (limited to `life_domains`), the family grants it; the grant's
/// id and the position written at.
async fn grant_supporter(
    server: &Server,
    household: &str,
    scopes: Vec<pb::AccessScope>,
    life_domains: Vec<pb::LifeDomain>,
) -> (String, u64) {
    let mut supporter = ConsentServiceClient::new(server.signed("ondersteuner").await);
    let request = supporter
        .request_access(pb::RequestAccessRequest {
            household_id: household.into(),
            terms: Some(pb::GrantTerms {
                scopes: scopes.iter().map(|s| *s as i32).collect(),
                life_domains: life_domains.iter().map(|d| *d as i32).collect(),
                ..Default::default()
            }),
            reason: "meedenken".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_request_id;
    let mut family = ConsentServiceClient::new(server.signed("ouder").await);
    let asked = family
        .list_access_grants(pb::ListAccessGrantsRequest {
            household_id: household.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .requests
        .into_iter()
        .find(|r| r.access_request_id == request)
        .unwrap();
    let granted = family
        .grant_access(pb::GrantAccessRequest {
            household_id: household.into(),
            grantee: asked.requester,
            terms: asked.terms,
            access_request_id: request,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (granted.grant_id, granted.result.unwrap().position)
}

/// How long a read that waits for a later position is given to arrive at the server before the
/// writes it waits for are made. (Only the old order of deciding first could be affected by it:
/// the fixed server refuses whatever the timing.)
const ARRIVAL: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_read_shows_only_what_its_decision_saw() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, client, _) = naast_tests::household_with_client(&mut family, "Familie Bos").await;
    let (grant, at) = grant_supporter(
        &server,
        &home,
        vec![pb::AccessScope::ReadTimeline],
        Vec::new(),
    )
    .await;

    // The supporter reads, waiting for a position two writes ahead: the revocation and a note.
    let mut supporter = HouseholdServiceClient::new(server.signed("ondersteuner").await);
    let read = {
        let home = home.clone();
        tokio::spawn(async move {
            supporter
                .list_timeline_entries(pb::ListTimelineEntriesRequest {
                    household_id: home,
                    min_position: at + 2,
                    ..Default::default()
                })
                .await
        })
    };
    tokio::time::sleep(ARRIVAL).await;
    let mut family_consent = ConsentServiceClient::new(server.signed("ouder").await);
    family_consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: home.clone(),
            grant_id: grant,
            reason: "niet meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    family
        .create_note(pb::CreateNoteRequest {
            household_id: home.clone(),
            text: "na de intrekking geschreven".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let answer = read.await.unwrap();
    match answer {
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
        Ok(page) => panic!(
            "a revoked supporter read the timeline: {:?}",
            page.into_inner().entries
        ),
    }

    // A reader limited to housing: a goal moved from housing to health meanwhile is not shown.
    let (_, at) = grant_supporter(
        &server,
        &home,
        vec![pb::AccessScope::ReadTimeline],
        vec![pb::LifeDomain::Housing],
    )
    .await;
    let goal = family
        .create_goal(pb::CreateGoalRequest {
            household_id: home.clone(),
            owner_member_id: client.clone(),
            title: "Een logeerplek vinden".into(),
            description: "met zorgvuldige beschrijving van de nachten".into(),
            life_domains: vec![pb::LifeDomain::Housing as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(goal.result.unwrap().position > at);
    let mut supporter = HouseholdServiceClient::new(server.signed("ondersteuner").await);
    let visible = supporter
        .list_goals(pb::ListGoalsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goals;
    assert_eq!(visible.len(), 1, "the housing goal is visible");
    let position = goal_position(&mut family, &home).await;
    let read = {
        let home = home.clone();
        tokio::spawn(async move {
            supporter
                .list_goals(pb::ListGoalsRequest {
                    household_id: home,
                    min_position: position + 1,
                    ..Default::default()
                })
                .await
        })
    };
    tokio::time::sleep(ARRIVAL).await;
    family
        .update_goal(pb::UpdateGoalRequest {
            household_id: home.clone(),
            goal_id: goal.goal_id.clone(),
            title: "Medicatie op orde".into(),
            description: "bloeddruk en slaap".into(),
            life_domains: vec![pb::LifeDomain::PhysicalHealth as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let goals = read.await.unwrap().unwrap().into_inner().goals;
    assert!(
        goals.iter().all(|g| g.title != "Medicatie op orde"),
        "a goal moved out of the reader's life domains was shown: {goals:?}"
    );
}

/// The household's last position, read back through the family's own timeline.
async fn goal_position(family: &mut Api, home: &str) -> u64 {
    family
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: home.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .iter()
        .map(|e| e.position)
        .max()
        .unwrap()
}

/// Longest a test waits for a stream to end: far past the one-second tokens.
const STREAM_END: Duration = Duration::from_secs(30);

/// The stream `open` opens with a token of `client` for `resource`, fetched right before: on a
/// loaded machine a short token can expire before its stream opens, and is then fetched again
/// (a few times at most; any other refusal fails the test).
async fn opened_with_a_fresh_token<S, F, Opened>(
    idp: &naast_tests::Idp,
    client: &str,
    resource: &str,
    open: F,
) -> S
where
    F: Fn(String) -> Opened,
    Opened: std::future::Future<Output = Result<tonic::Response<S>, tonic::Status>>,
{
    for _ in 0..5 {
        match open(idp.token_for(client, resource).await).await {
            Ok(stream) => return stream.into_inner(),
            Err(status) => assert!(status.message().contains("xpired"), "{status:?}"),
        }
    }
    panic!("{client}: no stream opened before its token expired, five times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_their_token_expires() {
    use naast_proto::pb::event_log_service_client::EventLogServiceClient;
    let idp = naast_tests::Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let server = naast_tests::server_trusting(dir.path(), &idp, &[]);
    let parent = idp.token("ouder-a").await;
    let mut family = HouseholdServiceClient::new(naast_tests::signed(&server.url(), &parent).await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Verlopen").await;

    // Tokens of one second: a timeline subscription of the family, the raw log's of an
    // administrator. Both end with UNAUTHENTICATED once the token has expired.
    // Each token is fetched right before its stream opens; on a loaded machine a second can
    // pass in between, and a token that expired before the stream opened is fetched again.
    let short = "https://naast.test/short";
    let url = server.url();
    let mut timeline = opened_with_a_fresh_token(&idp, "ouder-a", short, |token| {
        let (url, home) = (url.clone(), home.clone());
        async move {
            HouseholdServiceClient::new(naast_tests::signed(&url, &token).await)
                .subscribe_timeline(pb::SubscribeTimelineRequest {
                    household_id: home,
                    start_revision: Some(0),
                })
                .await
        }
    })
    .await;
    let mut raw = opened_with_a_fresh_token(&idp, "beheerder", short, |token| {
        let url = url.clone();
        async move {
            EventLogServiceClient::new(naast_tests::signed(&url, &token).await)
                .subscribe_events(pb::SubscribeEventsRequest::default())
                .await
        }
    })
    .await;

    let ended = tokio::time::timeout(STREAM_END, async {
        loop {
            match timeline.message().await {
                Ok(Some(_)) => continue, // the stored entries come first
                Ok(None) => panic!("the timeline stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the timeline stream outlived its token");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let ended = tokio::time::timeout(STREAM_END, raw.message())
        .await
        .expect("the raw subscription outlived its token")
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

/// Paths under `dir` (itself included) that group or others may read, write or enter.
#[cfg(unix)]
fn not_private(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && !metadata.file_type().is_symlink() {
            found.push(format!("{} {mode:o}", path.display()));
        }
    }
    found
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_for_naast_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();

    // A fresh data directory, written to by commands, reads and the audit log.
    let data = dir.path().join("nieuw").join("data");
    let mut server = Server::start(&data);
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Prive").await;
    family
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: home,
            ..Default::default()
        })
        .await
        .unwrap();
    drop(family);
    server.terminate();
    assert_eq!(not_private(&data), Vec::<String>::new());

    // One an older version left open is made private at the next start.
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(&data, open.clone()).unwrap();
    std::fs::set_permissions(data.join("audit"), open).unwrap();
    let stray = data.join("notes.txt");
    std::fs::write(&stray, "los bestand").unwrap();
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!not_private(&data).is_empty());
    let mut server = Server::start(&data);
    server.terminate();
    assert_eq!(not_private(&data), Vec::<String>::new());

    // A master key other users may read is refused before anything is opened.
    let key = naast_tests::master_key_file(dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(naast_tests::workspace_bin("naast"))
        .args([
            "serve",
            "--issuer",
            "https://login.example.nl",
            "--data-dir",
        ])
        .arg(dir.path().join("other"))
        .arg("--master-key-file")
        .arg(&key)
        .env_remove("NAAST_MASTER_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("chmod 600"), "{said}");
    assert!(!dir.path().join("other").exists(), "nothing was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_count_only_on_their_roles_and_refusals_name_no_one() {
    use naast_proto::pb::audit_service_client::AuditServiceClient;
    let idp = naast_tests::Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let server = naast_tests::server_trusting(dir.path(), &idp, &[]);
    let parent = idp.token("ouder-a").await;
    let signed = |token: String| {
        let url = server.url();
        async move { naast_tests::signed(&url, &token).await }
    };
    let mut family = HouseholdServiceClient::new(signed(parent.clone()).await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Claim").await;
    let mut family_consent = ConsentServiceClient::new(signed(parent.clone()).await);
    family_consent
        .grant_access(pb::GrantAccessRequest {
            household_id: home.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::OrganisationId("AGB-01234567".into())),
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

    // The professional of that organisation sees the grant; a citizen claiming it does not,
    // and cannot ask in its name.
    let grants = |token: String| {
        let home = home.clone();
        async move {
            ConsentServiceClient::new(signed(token).await)
                .list_access_grants(pb::ListAccessGrantsRequest { household_id: home })
                .await
                .unwrap()
                .into_inner()
                .grants
        }
    };
    assert_eq!(grants(idp.token("zorgverlener").await).await.len(), 1);
    let claimer = idp.token("ouder-met-org").await;
    assert_eq!(grants(claimer.clone()).await.len(), 0, "the claim counted");
    let refused = ConsentServiceClient::new(signed(claimer).await)
        .request_access(pb::RequestAccessRequest {
            household_id: home.clone(),
            for_organisation: true,
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                ..Default::default()
            }),
            reason: "namens de organisatie".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    // A platform without a grant, acting for the family's parent and for a stranger: the same
    // refusal; only the audit record says why.
    let read = |token: String| {
        let home = home.clone();
        async move {
            HouseholdServiceClient::new(signed(token).await)
                .list_timeline_entries(pb::ListTimelineEntriesRequest {
                    household_id: home,
                    ..Default::default()
                })
                .await
                .unwrap_err()
        }
    };
    let for_parent = read(idp.system_token("pgo-platform", "burger-ouder-a").await).await;
    let for_stranger = read(idp.system_token("pgo-platform", "burger-ouder-b").await).await;
    assert_eq!(for_parent.code(), Code::PermissionDenied);
    assert_eq!(for_parent.message(), for_stranger.message());
    let log = AuditServiceClient::new(signed(parent).await)
        .list_access_log(pb::ListAccessLogRequest {
            household_id: home,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        log.iter()
            .any(|r| r.outcome_reason.contains("has not allowed platform")),
        "{log:#?}"
    );
}

/// `GetCaller` with `token`: who the server takes the caller to be, or its refusal.
async fn caller(server: &Server, token: &str) -> Result<pb::GetCallerResponse, tonic::Status> {
    ConsentServiceClient::new(naast_tests::signed(&server.url(), token).await)
        .get_caller(pb::GetCallerRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// `token` with its header naming a key id its issuer never published (the signature no
/// longer matters: no key is found to check it with).
fn with_unknown_key_id(token: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: serde_json::Value =
        serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
    header["kid"] = "nooit-gepubliceerd".into();
    format!("{}.{rest}", b64.encode(header.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_issuer_withdrew_stops_being_trusted() {
    let idp = naast_tests::Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let key = naast_tests::master_key_file(dir.path());
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--master-key-file",
            key.to_str().unwrap(),
            "--issuer",
            &idp.issuer,
            "--jwks-ttl-seconds",
            "1",
            "--jwks-min-refresh-seconds",
            "0",
        ],
    );
    let old = idp.token("ouder-a").await;
    caller(&server, &old).await.unwrap();
    idp.withdraw_first_key().await;
    // Within a bounded number of tries, the keys are fetched again (the first calls may still
    // be served from the old set while that happens in the background).
    let mut refused = None;
    for _ in 0..150 {
        match caller(&server, &old).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a token signed with a withdrawn key stayed trusted");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let new = idp.token("ouder-a").await;
    caller(&server, &new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_keys_holds_up_no_token_with_a_known_key_and_failures_count_too() {
    let idp = naast_tests::Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let key = naast_tests::master_key_file(dir.path());
    let start = |name: &str, min_refresh: &str| {
        Server::start_with(
            &dir.path().join(name),
            &[
                "--master-key-file",
                key.to_str().unwrap(),
                "--issuer",
                &idp.issuer,
                "--jwks-min-refresh-seconds",
                min_refresh,
            ],
        )
    };

    // A fetch that hangs (a token with an unknown key id asked for it) holds up no token whose
    // key is cached.
    let server = start("wachten", "0");
    let first = idp.token("ouder-a").await;
    caller(&server, &first).await.unwrap();
    let before = idp.key_fetches().await;
    idp.key_endpoints("hold").await;
    let unknown = {
        let (url, token) = (server.url(), with_unknown_key_id(&first));
        tokio::spawn(async move {
            ConsentServiceClient::new(naast_tests::signed(&url, &token).await)
                .get_caller(pb::GetCallerRequest {})
                .await
        })
    };
    for _ in 0..200 {
        if idp.key_fetches().await > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(idp.key_fetches().await > before, "no fetch began");
    // Another token, never seen, signed with the cached key.
    let known = idp.token("ondersteuner").await;
    let answered = tokio::time::timeout(STREAM_END, caller(&server, &known))
        .await
        .expect("a token with a known key waited");
    answered.unwrap();
    assert!(
        !unknown.is_finished(),
        "the token with a known key was answered only after the hanging fetch"
    );
    idp.key_endpoints("serve").await;
    let refused = unknown.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    drop(server);

    // While the issuer fails, one failed fetch per period: the tokens that follow do not each
    // fetch again.
    idp.key_endpoints("fail").await;
    let server = start("storing", "300");
    let token = idp.token("ouder-b").await;
    assert_eq!(
        caller(&server, &token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let after_first = idp.key_fetches().await;
    for persona in ["ouder-a", "ondersteuner", "zorgverlener", "ouder-b"] {
        let token = idp.token(persona).await;
        let refused = caller(&server, &token).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.message().contains("keys"), "{refused:?}");
        let forged = with_unknown_key_id(&token);
        assert_eq!(
            caller(&server, &forged).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    assert_eq!(
        idp.key_fetches().await,
        after_first,
        "failed fetches were repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_issuers_each_vouches_only_for_what_it_is_configured_to() {
    let (first, second) = (naast_tests::Idp::start(), naast_tests::Idp::start());
    let dir = tempfile::tempdir().unwrap();
    let key = naast_tests::master_key_file(dir.path());
    let config = dir.path().join("naast.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nissuers = [\"{0}\", \"{1}\"]\nleeway_seconds = 0\n\
             [auth.issuer_claims.\"{0}\"]\nroles = [\"supporter\", \"professional\", \"admin\"]\n\
             organisations = [\"AGB-*\", \"MEE-*\"]\n",
            first.issuer, second.issuer
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--master-key-file",
            key.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let parent = first.token("ouder-a").await;
    let mut family = HouseholdServiceClient::new(naast_tests::signed(&server.url(), &parent).await);
    let (home, _, _) =
        naast_tests::household_with_client(&mut family, "Familie Twee Uitgevers").await;
    ConsentServiceClient::new(naast_tests::signed(&server.url(), &parent).await)
        .grant_access(pb::GrantAccessRequest {
            household_id: home.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::OrganisationId("AGB-01234567".into())),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let timeline = |token: String| {
        let (url, home) = (server.url(), home.clone());
        async move {
            HouseholdServiceClient::new(naast_tests::signed(&url, &token).await)
                .list_timeline_entries(pb::ListTimelineEntriesRequest {
                    household_id: home,
                    ..Default::default()
                })
                .await
        }
    };

    // The organisation's professional, vouched for by the issuer configured for it, reads.
    timeline(first.token("zorgverlener").await).await.unwrap();
    // The same claims from the other issuer are refused at sign-in, naming what it may not say.
    let refused = timeline(second.token("zorgverlener").await)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("may not assert"), "{refused:?}");
    let refused = caller(&server, &second.token("beheerder").await)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Its citizens sign in as themselves.
    let citizen = caller(&server, &second.token("ouder-b").await)
        .await
        .unwrap();
    assert_eq!(citizen.identity.unwrap().issuer, second.issuer);
}
