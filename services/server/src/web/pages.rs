//! The pages: my households (a supporter's caseload, with signals), a household's timeline by
//! day (filters, paging, live updates), its print view, its plan (goals by life domain,
//! agreements), and for owners who has access (grant, revoke, requests) and who looked.
//!
//! Each page is one or two calls of the gRPC service implementations on behalf of the
//! signed-in person (see the module above); what a page shows is what those calls answer, so a
//! supporter with a grant for one life domain sees that domain only, here as over gRPC.

use super::{Peer, Signed, Web, csrf_ok, csrf_refused, form_pairs, form_value, layout, page};
use crate::auth::layer::Calling;
use crate::grpc::convert::Vocabulary;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use naast_domain::access::{Action, ReadKind};
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::{FundingDomain, LifeDomain, PrincipalRole};
use naast_proto::pb;
use naast_proto::pb::audit_service_server::AuditService as _;
use naast_proto::pb::consent_service_server::ConsentService as _;
use naast_proto::pb::household_service_server::HouseholdService as _;
use std::collections::BTreeMap;

/// Entries on a timeline page.
const PAGE_SIZE: i32 = 50;
/// Most entries in a print view.
const PRINT_MAX: usize = 5_000;

/// `/huishoudens`: the households the person is involved in; for supporters and professionals
/// with their caseload's figures and open signals.
pub(crate) async fn households(State(web): State<Web>, peer: Peer, headers: HeaderMap) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListCaseload").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let caseload = match web
        .ask(
            &calling,
            "ListCaseload",
            pb::ListCaseloadRequest::default(),
            |r| web.households.list_caseload(r),
        )
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return super::status_page(&status),
    };
    let professional = matches!(
        signed.session.role,
        PrincipalRole::Supporter | PrincipalRole::Professional
    );
    let body = html! {
        h1 { @if professional { "Mijn caseload" } @else { "Mijn huishoudens" } }
        @if caseload.entries.is_empty() {
            p { "U heeft nog geen toegang tot een huishouden. Een gezin kan u toegang geven." }
        } @else if professional {
            table {
                caption { "Huishoudens op " (dutch_day(&caseload.as_of_date)) ", met de vroegste signalen eerst" }
                thead { tr {
                    th scope="col" { "Huishouden" }
                    th scope="col" { "Fase" }
                    th scope="col" { "Laatste contact" }
                    th scope="col" { "Minuten per week (4 weken)" }
                    th scope="col" { "Signalen" }
                } }
                tbody {
                    @for entry in &caseload.entries {
                        tr {
                            th scope="row" { a href={ "/huishoudens/" (entry.household_id) "/tijdlijn" } { (entry.name) } }
                            td { (phase_name(entry.phase)) }
                            td { (if entry.last_contact_date.is_empty() { "—".to_owned() } else { dutch_day(&entry.last_contact_date) }) }
                            td { (format!("{:.0}", entry.minutes_per_week_4_weeks)) }
                            td {
                                @if entry.signals.is_empty() { "geen" } @else {
                                    ul class="signals" {
                                        @for signal in &entry.signals {
                                            li { (signal.reason) " (" (dutch_day(&signal.due_date)) ")" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        } @else {
            ul class="households" {
                @for entry in &caseload.entries {
                    li { a href={ "/huishoudens/" (entry.household_id) "/tijdlijn" } { (entry.name) } }
                }
            }
        }
    };
    page(layout("Mijn huishoudens", Some(&signed), body))
}

/// The filters of a timeline page (one value each; ids and wire names only).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct TimelineQuery {
    /// A member's id.
    #[serde(default)]
    pub(crate) lid: String,
    /// A life domain's wire name.
    #[serde(default)]
    pub(crate) leefgebied: String,
    /// A funding domain's wire name.
    #[serde(default)]
    pub(crate) financiering: String,
    /// The token of the page to show.
    #[serde(default)]
    pagina: String,
}

impl TimelineQuery {
    /// The request for these filters, or the field that is wrong.
    pub(crate) fn request(&self, household: &str) -> Result<pb::ListTimelineEntriesRequest, Wrong> {
        let life_domains = match self.leefgebied.as_str() {
            "" => Vec::new(),
            name => vec![
                LifeDomain::from_wire(name)
                    .ok_or_else(|| Wrong::new("leefgebied", name))?
                    .to_proto(),
            ],
        };
        let funding_domains = match self.financiering.as_str() {
            "" => Vec::new(),
            name => vec![
                FundingDomain::from_wire(name)
                    .ok_or_else(|| Wrong::new("financiering", name))?
                    .to_proto(),
            ],
        };
        Ok(pb::ListTimelineEntriesRequest {
            household_id: household.to_owned(),
            member_id: self.lid.clone(),
            life_domains,
            funding_domains,
            page_size: PAGE_SIZE,
            page_token: self.pagina.clone(),
            ..Default::default()
        })
    }

    /// Whether a live entry passes these filters.
    pub(crate) fn admits(&self, entry: &pb::TimelineEntry) -> bool {
        (self.lid.is_empty() || entry.member_ids.contains(&self.lid))
            && (self.leefgebied.is_empty()
                || LifeDomain::from_wire(&self.leefgebied)
                    .is_some_and(|d| entry.life_domains.contains(&d.to_proto())))
            && (self.financiering.is_empty()
                || FundingDomain::from_wire(&self.financiering)
                    .is_some_and(|d| entry.funding_domains.contains(&d.to_proto())))
    }

    fn query_string(&self, page: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("lid", &self.lid)
            .append_pair("leefgebied", &self.leefgebied)
            .append_pair("financiering", &self.financiering)
            .append_pair("pagina", page)
            .finish()
    }
}

/// A form or query field whose value is not one naast knows.
#[derive(Debug)]
pub(crate) struct Wrong {
    field: &'static str,
    value: String,
}

impl Wrong {
    fn new(field: &'static str, value: &str) -> Self {
        Self {
            field,
            value: value.chars().take(80).collect(),
        }
    }

    /// The page saying so; nothing was written.
    pub(crate) fn page(&self) -> Response {
        wrong_field(self.field, &self.value)
    }
}

fn wrong_field(field: &str, value: &str) -> Response {
    super::page_with_detail(
        StatusCode::BAD_REQUEST,
        "Onbekende keuze",
        &format!("De keuze bij “{field}” bestaat niet."),
        &format!("{field}: {value:?} is not a known value"),
    )
}

/// The household's name and members, for those who may see them (the family itself, and
/// whoever may read its whole timeline or manage its network); `None` for whoever may see part
/// of it only. Whether to ask is decided first, on the same state and rules the read would be:
/// a reader who may not see the names does not ask, which would only put a refusal in the
/// family's access log at every page.
async fn household_of(
    web: &Web,
    calling: &Calling,
    id: &str,
) -> Result<Option<pb::Household>, Response> {
    let Ok(household) = id.parse::<HouseholdId>() else {
        return Ok(None);
    };
    let may = web
        .households
        .households()
        .inspect(household, |state, _| {
            calling
                .access(state, Action::Read(ReadKind::Household))
                .is_ok()
        })
        .await
        .unwrap_or(false);
    if !may {
        return Ok(None);
    }
    match web
        .ask(
            calling,
            "GetHousehold",
            pb::GetHouseholdRequest {
                household_id: id.to_owned(),
                ..Default::default()
            },
            |r| web.households.get_household(r),
        )
        .await
    {
        Ok(answer) => Ok(answer.into_inner().household),
        Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(None),
        Err(status) => Err(super::status_page(&status)),
    }
}

/// `/huishoudens/{id}/tijdlijn`: the unified timeline by day, with filters and paging; the last
/// page is kept up to date live.
pub(crate) async fn timeline(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TimelineQuery>,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListTimelineEntries").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let request = match query.request(&id) {
        Ok(request) => request,
        Err(wrong) => return wrong.page(),
    };
    // Live updates start after the revision the household is at now: the listing below shows
    // at least that much, and an entry it shows too is not added twice (the page skips a
    // revision it holds).
    let now = match id.parse::<HouseholdId>() {
        Ok(household) => web
            .households
            .households()
            .inspect(household, |_, revision| revision)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let entries = match web
        .ask(&calling, "ListTimelineEntries", request, |r| {
            web.households.list_timeline_entries(r)
        })
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return super::status_page(&status),
    };
    let household = match household_of(&web, &calling, &id).await {
        Ok(household) => household,
        Err(response) => return response,
    };
    let title = household.as_ref().map_or_else(
        || "Tijdlijn".to_owned(),
        |h| format!("Tijdlijn van {}", h.name),
    );
    let members: Vec<(String, String)> = household
        .iter()
        .flat_map(|h| &h.members)
        .map(|m| {
            (
                m.member_id.clone(),
                m.details
                    .as_ref()
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let last_page = entries.next_page_token.is_empty();
    let from = now.map_or(0, |revision| revision + 1);
    let live = last_page.then(|| {
        format!(
            "/huishoudens/{id}/tijdlijn/live?{}&vanaf={from}",
            query.query_string("")
        )
    });
    let body = html! {
        (household_nav(&id, "tijdlijn", signed.session.role))
        h1 { (title) }
        form method="get" class="filters" action={ "/huishoudens/" (id) "/tijdlijn" } {
            fieldset {
                legend { "Filteren" }
                @if !members.is_empty() {
                    label for="lid" { "Gezinslid" }
                    select id="lid" name="lid" {
                        option value="" { "iedereen" }
                        @for (member, name) in &members {
                            option value=(member) selected[*member == query.lid] { (name) }
                        }
                    }
                }
                label for="leefgebied" { "Leefgebied" }
                select id="leefgebied" name="leefgebied" {
                    option value="" { "alle" }
                    @for domain in LifeDomain::ALL {
                        option value=(domain.wire_name()) selected[domain.wire_name() == query.leefgebied] { (domain.display_name()) }
                    }
                }
                label for="financiering" { "Financiering" }
                select id="financiering" name="financiering" {
                    option value="" { "alle" }
                    @for domain in FundingDomain::ALL {
                        option value=(domain.wire_name()) selected[domain.wire_name() == query.financiering] { (domain.display_name()) }
                    }
                }
                button type="submit" { "Toon" }
            }
        }
        p id="live-status" class="live-status" role="status" aria-live="polite" {}
        div class="timeline" data-live=[live] {
            @if entries.entries.is_empty() {
                p class="empty" { "Geen gebeurtenissen (met deze filters)." }
            }
            (days(&entries.entries))
        }
        nav aria-label="Pagina's" class="pages" {
            @if !query.pagina.is_empty() {
                a href={ "/huishoudens/" (id) "/tijdlijn?" (query.query_string("")) } { "Naar het begin" }
            }
            @if !last_page {
                a href={ "/huishoudens/" (id) "/tijdlijn?" (query.query_string(&entries.next_page_token)) } { "Volgende pagina" }
            }
        }
    };
    page(layout(&title, Some(&signed), body))
}

/// Entries grouped by day, each day a section with its heading.
fn days(entries: &[pb::TimelineEntry]) -> Markup {
    let mut by_day: BTreeMap<&str, Vec<&pb::TimelineEntry>> = BTreeMap::new();
    for entry in entries {
        by_day.entry(entry.date.as_str()).or_default().push(entry);
    }
    html! {
        @for (day, entries) in by_day {
            section class="day" data-day=(day) aria-labelledby={ "dag-" (day) } {
                h2 id={ "dag-" (day) } { time datetime=(day) { (dutch_day(day)) } }
                ol class="entries" {
                    @for entry in entries { (entry_item(entry)) }
                }
            }
        }
    }
}

/// One timeline entry: its kind, what happened, its funding domains as badges (a transition
/// shown as from → to) and its life domains.
pub(crate) fn entry_item(entry: &pb::TimelineEntry) -> Markup {
    let kind = pb::TimelineEntryKind::try_from(entry.kind).unwrap_or_default();
    let transition = kind == pb::TimelineEntryKind::Transition;
    let funding: Vec<FundingDomain> = entry
        .funding_domains
        .iter()
        .filter_map(|d| known::<FundingDomain>(*d))
        .collect();
    let life: Vec<&str> = entry
        .life_domains
        .iter()
        .filter_map(|d| known::<LifeDomain>(*d))
        .map(LifeDomain::display_name)
        .collect();
    html! {
        li class={ "entry" @if transition { " transition" } } data-revision=(entry.revision) {
            span class="kind" { (kind_name(kind)) }
            " "
            span class="summary" { (entry.summary) }
            @if !funding.is_empty() {
                span class="badges" {
                    @if transition {
                        span class="visually-hidden" { "Overgang van financiering: " }
                    }
                    @for (i, domain) in funding.iter().enumerate() {
                        @if transition && i > 0 { span aria-hidden="true" { " → " } span class="visually-hidden" { " naar " } }
                        span class={ "badge fd-" (domain.wire_name()) } { (domain.display_name()) }
                    }
                }
            }
            @if !life.is_empty() {
                span class="life" { "Leefgebied: " (life.join(", ")) }
            }
        }
    }
}

/// The vocabulary value of a proto number, if it is a known one (unspecified: none).
fn known<V: Vocabulary>(value: i32) -> Option<V> {
    V::optional("", value).ok().flatten()
}

fn kind_name(kind: pb::TimelineEntryKind) -> &'static str {
    use pb::TimelineEntryKind as K;
    match kind {
        K::Unspecified => "Gebeurtenis",
        K::Household => "Gezin",
        K::Network => "Netwerk",
        K::Support => "Ondersteuning",
        K::Plan => "Plan",
        K::Goal => "Doel",
        K::Agreement => "Afspraak",
        K::Indication => "Indicatie",
        K::Transition => "Overgang",
        K::Logbook => "Logboek",
        K::Note => "Notitie",
        K::Access => "Toegang",
        K::CheckIn => "Check-in",
        K::Measurement => "Meting",
    }
}

fn phase_name(phase: i32) -> &'static str {
    known::<naast_domain::vocab::SupportPhase>(phase).map_or("—", |p| p.display_name())
}

/// The links of a household's pages (the owner's ones for citizens).
fn household_nav(id: &str, current: &str, role: PrincipalRole) -> Markup {
    let mut links = vec![("tijdlijn", "Tijdlijn"), ("plan", "Plan en afspraken")];
    if role == PrincipalRole::Citizen {
        links.push(("toegang", "Wie heeft toegang"));
        links.push(("inzage", "Wie keek mee"));
    }
    links.push(("afdrukken", "Afdrukken"));
    html! {
        nav aria-label="Dit huishouden" class="household-nav" {
            ul {
                li { a href="/huishoudens" { "Alle huishoudens" } }
                @for (path, label) in links {
                    li {
                        a href={ "/huishoudens/" (id) "/" (path) } aria-current=[(path == current).then_some("page")] { (label) }
                    }
                }
            }
        }
    }
}

/// `/huishoudens/{id}/afdrukken`: the whole timeline on paper, for a meeting at the kitchen
/// table.
pub(crate) async fn print(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListTimelineEntries").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let answer = match web
            .ask(
                &calling,
                "ListTimelineEntries",
                pb::ListTimelineEntriesRequest {
                    household_id: id.clone(),
                    page_size: 1_000,
                    page_token: token,
                    ..Default::default()
                },
                |r| web.households.list_timeline_entries(r),
            )
            .await
        {
            Ok(answer) => answer.into_inner(),
            Err(status) => return super::status_page(&status),
        };
        entries.extend(answer.entries);
        if answer.next_page_token.is_empty() || entries.len() >= PRINT_MAX {
            break;
        }
        token = answer.next_page_token;
    }
    let household = match household_of(&web, &calling, &id).await {
        Ok(household) => household,
        Err(response) => return response,
    };
    let name = household.map_or_else(|| "het huishouden".to_owned(), |h| h.name);
    let today = crate::grpc::convert::date_string(naast_domain::calendar::dutch_today());
    let body = html! {
        div class="print" {
            h1 { "Tijdlijn van " (name) }
            p { "Afgedrukt op " (dutch_day(&today)) " voor het keukentafelgesprek. " span class="no-print" { "Gebruik de afdrukfunctie van uw browser (Ctrl+P)." } }
            @if entries.len() >= PRINT_MAX { p { "Alleen de eerste " (PRINT_MAX) " gebeurtenissen staan hier." } }
            (days(&entries))
            p class="no-print" { a href={ "/huishoudens/" (id) "/tijdlijn" } { "Terug naar de tijdlijn" } }
        }
    };
    page(layout(
        &format!("Tijdlijn van {name} (afdruk)"),
        Some(&signed),
        body,
    ))
}

/// `/huishoudens/{id}/plan`: goals by life domain with their progress, agreements with their
/// phase, provider and funding.
pub(crate) async fn plan(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListGoals").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let goals = match web
        .ask(
            &calling,
            "ListGoals",
            pb::ListGoalsRequest {
                household_id: id.clone(),
                page_size: 1_000,
                ..Default::default()
            },
            |r| web.households.list_goals(r),
        )
        .await
    {
        Ok(answer) => answer.into_inner().goals,
        Err(status) => return super::status_page(&status),
    };
    let agreements = match web
        .ask(
            &calling,
            "ListAgreements",
            pb::ListAgreementsRequest {
                household_id: id.clone(),
                page_size: 1_000,
                ..Default::default()
            },
            |r| web.households.list_agreements(r),
        )
        .await
    {
        Ok(answer) => answer.into_inner().agreements,
        Err(status) => return super::status_page(&status),
    };
    let household = match household_of(&web, &calling, &id).await {
        Ok(household) => household,
        Err(response) => return response,
    };
    let contacts: BTreeMap<String, String> = household
        .iter()
        .flat_map(|h| &h.contacts)
        .map(|c| {
            (
                c.contact_id.clone(),
                c.details
                    .as_ref()
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let plans: Vec<&pb::Plan> = household.iter().flat_map(|h| &h.plans).collect();
    let mut by_domain: BTreeMap<&str, Vec<&pb::Goal>> = BTreeMap::new();
    for goal in &goals {
        let domains: Vec<&str> = goal
            .life_domains
            .iter()
            .filter_map(|d| known::<LifeDomain>(*d))
            .map(LifeDomain::display_name)
            .collect();
        if domains.is_empty() {
            by_domain.entry("overig").or_default().push(goal);
        }
        for domain in domains {
            by_domain.entry(domain).or_default().push(goal);
        }
    }
    let body = html! {
        (household_nav(&id, "plan", signed.session.role))
        h1 { "Plan en afspraken" }
        @for plan in plans.iter().filter(|p| p.status == pb::PlanStatus::Active as i32) {
            section aria-labelledby={ "plan-" (plan.plan_id) } {
                h2 id={ "plan-" (plan.plan_id) } { "Huidig plan: " (plan.title) }
                p { (plan.summary) }
                p { "Versie " (plan.version) }
            }
        }
        section aria-labelledby="doelen" {
            h2 id="doelen" { "Doelen per leefgebied" }
            @if goals.is_empty() { p { "Geen doelen (die u mag zien)." } }
            @for (domain, goals) in &by_domain {
                h3 { (capitalised(domain)) }
                ul class="goals" {
                    @for goal in goals {
                        li {
                            strong { (goal.title) }
                            " — " (goal_status(goal.status))
                            ", " (goal.progress_notes) " voortgangsnotitie" @if goal.progress_notes != 1 { "s" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="afspraken" {
            h2 id="afspraken" { "Afspraken" }
            @if agreements.is_empty() { p { "Geen afspraken (die u mag zien)." } } @else {
                table {
                    caption { "Afspraken met hun fase, wie ze uitvoert en hoe ze betaald worden" }
                    thead { tr {
                        th scope="col" { "Afspraak" }
                        th scope="col" { "Fase" }
                        th scope="col" { "Uitvoerder" }
                        th scope="col" { "Financiering" }
                        th scope="col" { "Periode" }
                    } }
                    tbody {
                        @for view in &agreements {
                            @let terms = view.agreement.as_ref().and_then(|a| a.terms.clone()).unwrap_or_default();
                            tr {
                                th scope="row" { (terms.title) @if !terms.frequency.is_empty() { br; span class="small" { (terms.frequency) } } }
                                td { (agreement_phase(view.phase)) }
                                td { (contacts.get(&terms.responsible_contact_id).map_or("—", String::as_str)) }
                                td {
                                    @if let Some(domain) = known::<FundingDomain>(view.funding_domain) {
                                        span class={ "badge fd-" (domain.wire_name()) } { (domain.display_name()) }
                                    }
                                    @if terms.pgb { " (pgb)" }
                                }
                                td { (dutch_day(&terms.start_date)) @if !terms.end_date.is_empty() { " t/m " (dutch_day(&terms.end_date)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(layout("Plan en afspraken", Some(&signed), body))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn goal_status(status: i32) -> &'static str {
    match pb::GoalStatus::try_from(status).unwrap_or_default() {
        pb::GoalStatus::Active => "loopt",
        pb::GoalStatus::Achieved => "bereikt",
        pb::GoalStatus::Abandoned => "losgelaten",
        pb::GoalStatus::Unspecified => "—",
    }
}

fn agreement_phase(phase: i32) -> &'static str {
    match pb::AgreementPhase::try_from(phase).unwrap_or_default() {
        pb::AgreementPhase::Proposed => "voorgesteld",
        pb::AgreementPhase::Upcoming => "gaat nog in",
        pb::AgreementPhase::Active => "loopt",
        pb::AgreementPhase::UnderReview => "wordt herzien",
        pb::AgreementPhase::Ended => "beëindigd",
        pb::AgreementPhase::Rejected => "afgewezen",
        pb::AgreementPhase::Unspecified => "—",
    }
}

/// `/huishoudens/{id}/toegang`: who has access and to what, requests waiting for the family,
/// and the forms to grant and revoke (owners only: the service refuses anyone else).
pub(crate) async fn access(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListAccessGrants").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let grants = match web
        .ask(
            &calling,
            "ListAccessGrants",
            pb::ListAccessGrantsRequest {
                household_id: id.clone(),
            },
            |r| web.households.list_access_grants(r),
        )
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return super::status_page(&status),
    };
    let csrf = signed.session.csrf.clone();
    let open_requests: Vec<&pb::AccessRequest> = grants
        .requests
        .iter()
        .filter(|r| r.status == pb::AccessRequestStatus::Open as i32)
        .collect();
    let body = html! {
        (household_nav(&id, "toegang", signed.session.role))
        h1 { "Wie heeft toegang" }
        section aria-labelledby="toegangen" {
            h2 id="toegangen" { "Gegeven toegang" }
            @if grants.grants.iter().all(|g| !g.holds_today) { p { "Niemand buiten het gezin heeft nu toegang." } }
            ul class="grants" {
                @for grant in grants.grants.iter().filter(|g| g.holds_today) {
                    li data-grant=(grant.grant_id) {
                        p { strong { (grantee_name(grant.grantee.as_ref())) } }
                        (terms_text(grant.terms.as_ref()))
                        form method="post" action={ "/huishoudens/" (id) "/toegang/" (grant.grant_id) "/intrekken" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Toegang intrekken" span class="visually-hidden" { " van " (grantee_name(grant.grantee.as_ref())) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="verzoeken" {
            h2 id="verzoeken" { "Verzoeken om toegang" }
            @if open_requests.is_empty() { p { "Er wachten geen verzoeken." } }
            ul class="requests" {
                @for request in &open_requests {
                    li {
                        p { strong { (grantee_name(request.requester.as_ref())) } " vraagt toegang" @if !request.reason.is_empty() { ": " (request.reason) } }
                        (terms_text(request.terms.as_ref()))
                        form method="post" action={ "/huishoudens/" (id) "/toegang" } class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="verzoek" value=(request.access_request_id);
                            button type="submit" { "Toestaan" }
                        }
                        form method="post" action={ "/huishoudens/" (id) "/verzoeken/" (request.access_request_id) "/afwijzen" } class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Afwijzen" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="geven" {
            h2 id="geven" { "Toegang geven" }
            form method="post" action={ "/huishoudens/" (id) "/toegang" } class="grant" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "Aan wie" }
                    p {
                        label for="persoon" { "Inlognaam van de persoon (bij dezelfde inlogdienst als u)" }
                        input id="persoon" name="persoon" type="text" autocomplete="off" spellcheck="false";
                    }
                    p {
                        label for="organisatie" { "Of: code van de organisatie (AGB of URA), voor al haar medewerkers" }
                        input id="organisatie" name="organisatie" type="text" autocomplete="off" spellcheck="false";
                    }
                }
                fieldset {
                    legend { "Wat mag die doen" }
                    @for (value, label, checked) in SCOPES {
                        p class="check" {
                            input type="checkbox" id={ "recht-" (value) } name="recht" value=(value) checked[*checked];
                            label for={ "recht-" (value) } { (label) }
                        }
                    }
                }
                fieldset {
                    legend { "Welke leefgebieden (niets aangevinkt: alle)" }
                    @for domain in LifeDomain::ALL {
                        p class="check" {
                            input type="checkbox" id={ "lg-" (domain.wire_name()) } name="leefgebied" value=(domain.wire_name());
                            label for={ "lg-" (domain.wire_name()) } { (capitalised(domain.display_name())) }
                        }
                    }
                }
                fieldset {
                    legend { "Welke financiering (niets aangevinkt: alle)" }
                    @for domain in FundingDomain::ALL {
                        p class="check" {
                            input type="checkbox" id={ "fd-" (domain.wire_name()) } name="financiering" value=(domain.wire_name());
                            label for={ "fd-" (domain.wire_name()) } { (domain.display_name()) }
                        }
                    }
                }
                p {
                    label for="tot" { "Tot en met (leeg: tot u het intrekt)" }
                    input id="tot" name="tot" type="date";
                }
                button type="submit" { "Toegang geven" }
            }
        }
    };
    page(layout("Wie heeft toegang", Some(&signed), body))
}

/// The scopes a grant can give: the form's value, its label, whether it is ticked at first.
const SCOPES: &[(&str, &str, bool)] = &[
    ("lezen", "De tijdlijn, doelen en afspraken lezen", true),
    ("doelen", "Doelen bijhouden en notities schrijven", false),
    ("afspraken", "Afspraken voorstellen en wijzigen", false),
    (
        "logboek",
        "Het logboek van de ondersteuner bijhouden",
        false,
    ),
    ("netwerk", "Het netwerk bijhouden", false),
    ("plannen", "Plannen, fasen en indicaties bijhouden", false),
];

fn scope_of(value: &str) -> Option<pb::AccessScope> {
    Some(match value {
        "lezen" => pb::AccessScope::ReadTimeline,
        "doelen" => pb::AccessScope::WriteGoalsNotes,
        "afspraken" => pb::AccessScope::ProposeAgreements,
        "logboek" => pb::AccessScope::KeepLogbook,
        "netwerk" => pb::AccessScope::ManageNetwork,
        "plannen" => pb::AccessScope::ManagePlans,
        _ => return None,
    })
}

fn scope_label(scope: i32) -> &'static str {
    let value = match pb::AccessScope::try_from(scope).unwrap_or_default() {
        pb::AccessScope::ReadTimeline => "lezen",
        pb::AccessScope::WriteGoalsNotes => "doelen",
        pb::AccessScope::ProposeAgreements => "afspraken",
        pb::AccessScope::KeepLogbook => "logboek",
        pb::AccessScope::ManageNetwork => "netwerk",
        pb::AccessScope::ManagePlans => "plannen",
        pb::AccessScope::Unspecified => "",
    };
    SCOPES
        .iter()
        .find(|(v, _, _)| *v == value)
        .map_or("onbekend recht", |(_, label, _)| label)
}

fn grantee_name(grantee: Option<&pb::Grantee>) -> String {
    match grantee.and_then(|g| g.kind.as_ref()) {
        Some(pb::grantee::Kind::Person(person)) => format!("Persoon {}", person.subject),
        Some(pb::grantee::Kind::OrganisationId(org)) => format!("Organisatie {org}"),
        Some(pb::grantee::Kind::Platform(platform)) => format!("PGO {}", platform.client_id),
        None => "onbekend".to_owned(),
    }
}

fn terms_text(terms: Option<&pb::GrantTerms>) -> Markup {
    let Some(terms) = terms else {
        return html! {};
    };
    let life: Vec<&str> = terms
        .life_domains
        .iter()
        .filter_map(|d| known::<LifeDomain>(*d))
        .map(LifeDomain::display_name)
        .collect();
    let funding: Vec<&str> = terms
        .funding_domains
        .iter()
        .filter_map(|d| known::<FundingDomain>(*d))
        .map(FundingDomain::display_name)
        .collect();
    html! {
        ul class="terms" {
            @for scope in &terms.scopes { li { (scope_label(*scope)) } }
            li { "Leefgebieden: " (if life.is_empty() { "alle".to_owned() } else { life.join(", ") }) }
            li { "Financiering: " (if funding.is_empty() { "alle".to_owned() } else { funding.join(", ") }) }
            @if !terms.until.is_empty() { li { "Tot en met " (dutch_day(&terms.until)) } }
        }
    }
}

/// `POST /huishoudens/{id}/toegang`: a grant, to a person at the owner's own sign-in service or
/// to an organisation, or in answer to a request.
pub(crate) async fn grant(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "GrantAccess").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let pairs = form_pairs(&body);
    if !csrf_ok(&signed, &pairs) {
        return csrf_refused();
    }
    let request = match grant_request(&web, &calling, &signed, &id, &pairs).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match web
        .ask(&calling, "GrantAccess", request, |r| {
            web.households.grant_access(r)
        })
        .await
    {
        Ok(_) => Redirect::to(&format!("/huishoudens/{id}/toegang")).into_response(),
        Err(status) => super::status_page(&status),
    }
}

async fn grant_request(
    web: &Web,
    calling: &Calling,
    signed: &Signed,
    id: &str,
    pairs: &[(String, String)],
) -> Result<pb::GrantAccessRequest, Response> {
    let values = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    // In answer to a request: its requester and terms.
    if let Some(request_id) = form_value(pairs, "verzoek").filter(|v| !v.is_empty()) {
        let listed = web
            .ask(
                calling,
                "ListAccessGrants",
                pb::ListAccessGrantsRequest {
                    household_id: id.to_owned(),
                },
                |r| web.households.list_access_grants(r),
            )
            .await
            .map_err(|s| super::status_page(&s))?
            .into_inner();
        let Some(asked) = listed
            .requests
            .into_iter()
            .find(|r| r.access_request_id == request_id)
        else {
            return Err(wrong_field("verzoek", request_id));
        };
        return Ok(pb::GrantAccessRequest {
            household_id: id.to_owned(),
            grantee: asked.requester,
            terms: asked.terms,
            access_request_id: asked.access_request_id,
            ..Default::default()
        });
    }
    let person = values("persoon").into_iter().next();
    let organisation = values("organisatie").into_iter().next();
    let grantee = match (person, organisation) {
        (Some(subject), None) => pb::grantee::Kind::Person(pb::Identity {
            issuer: signed.session.issuer.clone(),
            subject,
        }),
        (None, Some(organisation)) => pb::grantee::Kind::OrganisationId(organisation),
        (Some(_), Some(_)) => {
            return Err(super::page_with_detail(
                StatusCode::BAD_REQUEST,
                "Kies één ontvanger",
                "Vul een persoon óf een organisatie in, niet allebei. Er is niets opgeslagen.",
                "persoon, organisatie: give one",
            ));
        }
        (None, None) => {
            return Err(super::page_with_detail(
                StatusCode::BAD_REQUEST,
                "Aan wie?",
                "Vul de inlognaam van een persoon of de code van een organisatie in. Er is niets opgeslagen.",
                "persoon, organisatie: one is required",
            ));
        }
    };
    let mut scopes = Vec::new();
    for value in values("recht") {
        scopes.push(scope_of(&value).ok_or_else(|| wrong_field("recht", &value))? as i32);
    }
    let mut life_domains = Vec::new();
    for value in values("leefgebied") {
        life_domains.push(
            LifeDomain::from_wire(&value)
                .ok_or_else(|| wrong_field("leefgebied", &value))?
                .to_proto(),
        );
    }
    let mut funding_domains = Vec::new();
    for value in values("financiering") {
        funding_domains.push(
            FundingDomain::from_wire(&value)
                .ok_or_else(|| wrong_field("financiering", &value))?
                .to_proto(),
        );
    }
    Ok(pb::GrantAccessRequest {
        household_id: id.to_owned(),
        grantee: Some(pb::Grantee {
            kind: Some(grantee),
        }),
        terms: Some(pb::GrantTerms {
            scopes,
            life_domains,
            funding_domains,
            until: values("tot").into_iter().next().unwrap_or_default(),
        }),
        ..Default::default()
    })
}

/// `POST /huishoudens/{id}/toegang/{grant}/intrekken`.
pub(crate) async fn revoke(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path((id, grant)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let asking = web.clone();
    let request = pb::RevokeAccessRequest {
        household_id: id.clone(),
        grant_id: grant,
        ..Default::default()
    };
    owner_form(
        &web,
        peer,
        &headers,
        &body,
        "RevokeAccess",
        &id,
        |calling| async move {
            asking
                .ask(&calling, "RevokeAccess", request, |r| {
                    asking.households.revoke_access(r)
                })
                .await
                .map(drop)
        },
    )
    .await
}

/// `POST /huishoudens/{id}/verzoeken/{request}/afwijzen`.
pub(crate) async fn decline(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path((id, request)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let asking = web.clone();
    let request = pb::DeclineAccessRequestRequest {
        household_id: id.clone(),
        access_request_id: request,
        ..Default::default()
    };
    owner_form(
        &web,
        peer,
        &headers,
        &body,
        "DeclineAccessRequest",
        &id,
        |calling| async move {
            asking
                .ask(&calling, "DeclineAccessRequest", request, |r| {
                    asking.households.decline_access_request(r)
                })
                .await
                .map(drop)
        },
    )
    .await
}

/// A form of the access page that is one command: admitted as `method`, its CSRF token
/// checked, then `command`; back to the access page, or the refusal.
async fn owner_form<F, Fut>(
    web: &Web,
    peer: Peer,
    headers: &HeaderMap,
    body: &[u8],
    method: &str,
    id: &str,
    command: F,
) -> Response
where
    F: FnOnce(Calling) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let (signed, calling) = match web.admit(headers, peer.0, method).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if !csrf_ok(&signed, &form_pairs(body)) {
        return csrf_refused();
    }
    match command(calling).await {
        Ok(()) => Redirect::to(&format!("/huishoudens/{id}/toegang")).into_response(),
        Err(status) => super::status_page(&status),
    }
}

/// The period of the access log.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Period {
    #[serde(default)]
    van: String,
    #[serde(default)]
    tot: String,
}

/// `/huishoudens/{id}/inzage`: who looked at the family's data, and who was refused, by period
/// (the NEN 7513 record of every access, as the family may read it).
pub(crate) async fn access_log(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(period): Query<Period>,
) -> Response {
    let (signed, calling) = match web.admit(&headers, peer.0, "ListAccessLog").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let day = |field: &'static str, value: &str| -> Result<Option<time::Date>, Wrong> {
        if value.is_empty() {
            return Ok(None);
        }
        crate::grpc::convert::date(field, value)
            .map(Some)
            .map_err(|_| Wrong::new(field, value))
    };
    let (from, until) = match (day("van", &period.van), day("tot", &period.tot)) {
        (Ok(from), Ok(until)) => (from, until),
        (Err(wrong), _) | (_, Err(wrong)) => return wrong.page(),
    };
    // Without a period: the last 30 days, so that the newest are what is shown.
    let today = naast_domain::calendar::dutch_today();
    let from = from.or_else(|| {
        until
            .is_none()
            .then(|| today.checked_sub(time::Duration::days(30)))
            .flatten()
    });
    let shown = |day: Option<time::Date>| {
        day.map(crate::grpc::convert::date_string)
            .unwrap_or_default()
    };
    let (van, tot) = (shown(from), shown(until));
    let stamp = |seconds: i64| prost_types::Timestamp { seconds, nanos: 0 };
    let mut records = Vec::new();
    let mut token = String::new();
    let mut more = false;
    loop {
        let answer = match web
            .ask(
                &calling,
                "ListAccessLog",
                pb::ListAccessLogRequest {
                    household_id: id.clone(),
                    from_time: from.map(|d| stamp(naast_domain::calendar::dutch_midnight(d))),
                    until_time: until
                        .and_then(|d| d.next_day())
                        .map(|d| stamp(naast_domain::calendar::dutch_midnight(d))),
                    page_size: 1_000,
                    page_token: token,
                },
                |r| web.audit.list_access_log(r),
            )
            .await
        {
            Ok(answer) => answer.into_inner(),
            Err(status) => return super::status_page(&status),
        };
        records.extend(answer.records);
        if answer.next_page_token.is_empty() {
            break;
        }
        if records.len() >= PRINT_MAX {
            more = true;
            break;
        }
        token = answer.next_page_token;
    }
    // Newest first: what the family wants to know is who looked lately.
    records.reverse();
    let body = html! {
        (household_nav(&id, "inzage", signed.session.role))
        h1 { "Wie keek mee" }
        p { "Elke keer dat iemand gegevens van uw gezin opent of wijzigt, of dat probeert zonder toestemming, wordt dat vastgelegd. Hier ziet u wie, wanneer en wat." }
        form method="get" class="filters" action={ "/huishoudens/" (id) "/inzage" } {
            fieldset {
                legend { "Periode" }
                label for="van" { "Van" }
                input id="van" name="van" type="date" value=(van);
                label for="tot" { "Tot en met" }
                input id="tot" name="tot" type="date" value=(tot);
                button type="submit" { "Toon" }
            }
        }
        @if more {
            p class="notice" { "Dit zijn de eerste " (PRINT_MAX) " in deze periode; kies een kortere periode om de rest te zien." }
        }
        @if records.is_empty() { p { "Niets vastgelegd in deze periode." } } @else {
            table class="access-log" {
                caption { (records.len()) " keer, de nieuwste bovenaan" }
                thead { tr {
                    th scope="col" { "Wanneer" }
                    th scope="col" { "Wie" }
                    th scope="col" { "Wat" }
                    th scope="col" { "Via" }
                    th scope="col" { "Uitkomst" }
                } }
                tbody {
                    @for record in &records {
                        tr {
                            td { (moment(record.recorded_at.as_ref())) }
                            td { (who(record.user.as_ref())) }
                            td { (what(&record.operation)) }
                            td { (door(&record.operation)) }
                            td {
                                @if record.outcome == pb::AuditOutcome::Denied as i32 { "geweigerd" } @else { "toegestaan" }
                            }
                        }
                    }
                }
            }
        }
    };
    page(layout("Wie keek mee", Some(&signed), body))
}

fn moment(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|t| naast_domain::calendar::dutch_clock(t.seconds))
        .map_or_else(String::new, |(day, hour, minute)| {
            format!(
                "{} {hour:02}:{minute:02}",
                dutch_day(&crate::grpc::convert::date_string(day))
            )
        })
}

fn who(user: Option<&pb::AuditUser>) -> String {
    let Some(user) = user else {
        return "onbekend (niet aangemeld)".to_owned();
    };
    let role = match pb::PrincipalRole::try_from(user.role).unwrap_or_default() {
        pb::PrincipalRole::Citizen => "gezin",
        pb::PrincipalRole::Supporter => "cliëntondersteuner",
        pb::PrincipalRole::Professional => "zorgverlener",
        pb::PrincipalRole::Pgo => "PGO",
        pb::PrincipalRole::Evaluator => "evaluator",
        pb::PrincipalRole::Admin => "beheerder",
        pb::PrincipalRole::Unspecified => "onbekend",
    };
    let name = if user.name.is_empty() {
        &user.subject
    } else {
        &user.name
    };
    if user.organisation_id.is_empty() {
        format!("{name} ({role})")
    } else {
        format!("{name} ({role}, {})", user.organisation_id)
    }
}

/// An operation as the family would say it.
fn what(operation: &str) -> String {
    let name = operation.rsplit(['/', ' ']).next().unwrap_or(operation);
    let said = match name {
        "ListTimelineEntries" | "SubscribeTimeline" => "tijdlijn bekeken",
        "GetHousehold" => "gezinsgegevens bekeken",
        "ListGoals" | "GetPlan" => "doelen en plan bekeken",
        "ListAgreements" => "afspraken bekeken",
        "ListAccessGrants" => "toegang bekeken",
        "ListAccessLog" => "deze lijst bekeken",
        "GrantAccess" => "toegang gegeven",
        "RevokeAccess" => "toegang ingetrokken",
        "ListCaseload" => "overzicht van huishoudens bekeken",
        "CreateNote" => "notitie geschreven",
        _ => return operation.chars().take(80).collect(),
    };
    said.to_owned()
}

fn door(operation: &str) -> &'static str {
    if operation.starts_with("web ") {
        "deze website"
    } else if operation.starts_with("FHIR ") {
        "FHIR (PGO of zorgsysteem)"
    } else if operation.starts_with("push ") {
        "doorgestuurd naar PGO"
    } else {
        "app of systeem (gRPC)"
    }
}

/// A day as Dutch people write it: `3 maart 2026`.
pub(crate) fn dutch_day(day: &str) -> String {
    const MONTHS: [&str; 12] = [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ];
    let mut parts = day.splitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(year), Some(month), Some(d)) => {
            let month = month
                .parse::<usize>()
                .ok()
                .and_then(|m| MONTHS.get(m.wrapping_sub(1)));
            match (month, d.parse::<u8>()) {
                (Some(month), Ok(d)) => format!("{d} {month} {year}"),
                _ => day.to_owned(),
            }
        }
        _ => day.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_written_the_dutch_way() {
        assert_eq!(dutch_day("2026-03-03"), "3 maart 2026");
        assert_eq!(dutch_day("2026-12-31"), "31 december 2026");
        assert_eq!(dutch_day("2026-13-01"), "2026-13-01");
        assert_eq!(dutch_day(""), "");
    }

    #[test]
    fn a_transition_shows_from_and_to() {
        let entry = pb::TimelineEntry {
            revision: 7,
            kind: pb::TimelineEntryKind::Transition as i32,
            date: "2026-03-03".into(),
            summary: "Naar de Wlz <b>".into(),
            funding_domains: vec![
                FundingDomain::Jeugdwet.to_proto(),
                FundingDomain::Wlz.to_proto(),
            ],
            ..Default::default()
        };
        let html = entry_item(&entry).into_string();
        assert!(html.contains("transition"), "{html}");
        let jeugdwet = html.find(">Jeugdwet<").unwrap_or(usize::MAX);
        let wlz = html.find(">Wlz<").unwrap_or(0);
        assert!(jeugdwet < wlz, "from before to: {html}");
        // What families write is escaped.
        assert!(html.contains("Naar de Wlz &lt;b&gt;"), "{html}");
    }

    #[test]
    fn filters_refuse_unknown_values_and_live_entries_follow_them() {
        let query = TimelineQuery {
            leefgebied: "wonen-niet".into(),
            ..Default::default()
        };
        assert!(query.request("h").is_err());
        let query = TimelineQuery {
            leefgebied: "housing".into(),
            ..Default::default()
        };
        let request = query.request("h").ok().unwrap_or_default();
        assert_eq!(request.life_domains, vec![LifeDomain::Housing.to_proto()]);
        let housing = pb::TimelineEntry {
            life_domains: vec![LifeDomain::Housing.to_proto()],
            ..Default::default()
        };
        let safety = pb::TimelineEntry {
            life_domains: vec![LifeDomain::Safety.to_proto()],
            ..Default::default()
        };
        assert!(query.admits(&housing));
        assert!(!query.admits(&safety));
    }
}
