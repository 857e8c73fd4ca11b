//! `naast.v1.EvaluationService`: the measurement instruments and the effect report, over the
//! application layer's [`Evaluation`].

use super::convert::{self as c, Vocabulary};
use super::households::split;
use super::status::{from_app_error, invalid_argument};
use naast_app::evaluation::Evaluation;
use naast_domain::measure::{Instrument, Item};
use naast_domain::report::{self, Cohort};
use naast_domain::vocab::{
    FamilyType, ItemKind, LifeDomain, MeasurementMoment, RespondentKind, SupporterKind,
};
use naast_proto::pb;
use tonic::{Request, Response, Status};

/// The service.
#[derive(Clone)]
pub struct EvaluationApi {
    evaluation: Evaluation,
}

impl EvaluationApi {
    /// Serves `evaluation`.
    pub fn new(evaluation: Evaluation) -> Self {
        Self { evaluation }
    }
}

fn instrument_to_proto(instrument: &Instrument) -> pb::Instrument {
    pb::Instrument {
        key: instrument.key.clone(),
        version: instrument.version,
        title: instrument.title.clone(),
        respondent: instrument.respondent.to_proto(),
        items: instrument
            .items
            .iter()
            .map(|item| pb::InstrumentItem {
                key: item.key.clone(),
                kind: item.kind.to_proto(),
                text: item.text.clone(),
                min: u32::from(item.min),
                max: u32::from(item.max),
                labels: item.labels.clone(),
                life_domain: item.life_domain.map_or(0, Vocabulary::to_proto),
            })
            .collect(),
    }
}

/// A scale bound from its proto `uint32`; the domain checks the range.
fn bound(field: &str, value: u32) -> Result<u8, Status> {
    u8::try_from(value)
        .map_err(|_| invalid_argument(field, format!("is {value}; scales go up to 100")))
}

fn instrument_from_proto(instrument: Option<pb::Instrument>) -> Result<Instrument, Status> {
    let instrument = instrument.ok_or_else(|| invalid_argument("instrument", "must be set"))?;
    let items = instrument
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| format!("instrument.items[{i}].{name}");
            Ok(Item {
                key: item.key,
                kind: ItemKind::required(&field("kind"), item.kind)?,
                text: item.text,
                min: bound(&field("min"), item.min)?,
                max: bound(&field("max"), item.max)?,
                labels: item.labels,
                life_domain: LifeDomain::optional(&field("life_domain"), item.life_domain)?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(Instrument {
        key: instrument.key,
        version: instrument.version,
        title: instrument.title,
        respondent: RespondentKind::required("instrument.respondent", instrument.respondent)?,
        items,
    })
}

fn report_to_proto(report: &report::Report, csv: bool) -> pb::GetEffectReportResponse {
    pb::GetEffectReportResponse {
        households_suppressed: report.households.is_none(),
        households: report.households.unwrap_or(0),
        indicators: report
            .indicators
            .iter()
            .map(|i| pb::IndicatorFigures {
                instrument: i.instrument.clone(),
                item: i.item.clone(),
                kind: i.kind.to_proto(),
                respondent: i.respondent.to_proto(),
                life_domain: i.life_domain.map_or(0, Vocabulary::to_proto),
                text: i.text.clone(),
                suppressed: i.figures.is_none(),
                figures: i.figures.as_ref().map(|f| pb::PairedFigures {
                    n: f.n,
                    households: f.households,
                    mean_before: f.mean_before,
                    mean_after: f.mean_after,
                    difference: f.difference,
                    percent_change: f.percent_change,
                    wants_change_before: f.wants_change.map(|w| w.0),
                    wants_change_after: f.wants_change.map(|w| w.1),
                }),
            })
            .collect(),
        goals: report
            .goals
            .iter()
            .map(|g| {
                let (households, goals, achieved) = g.figures.unwrap_or_default();
                pb::GoalFigures {
                    life_domain: g.life_domain.to_proto(),
                    owner: if g.clients {
                        RespondentKind::Client
                    } else {
                        RespondentKind::Relative
                    }
                    .to_proto(),
                    suppressed: g.figures.is_none(),
                    households,
                    goals,
                    achieved,
                }
            })
            .collect(),
        support: Some(match &report.support {
            Some(s) => pb::SupportFigures {
                suppressed: false,
                households: s.households,
                minutes_per_household_per_week: s.minutes_per_household_per_week,
                yearly_cost_per_household_eur: s.yearly_cost_per_household_eur,
                hourly_rate_cents: s.hourly_rate_cents,
            },
            None => pb::SupportFigures {
                suppressed: true,
                ..Default::default()
            },
        }),
        csv: if csv {
            report::to_csv(report)
        } else {
            String::new()
        },
    }
}

#[tonic::async_trait]
impl pb::evaluation_service_server::EvaluationService for EvaluationApi {
    async fn list_instruments(
        &self,
        request: Request<pb::ListInstrumentsRequest>,
    ) -> Result<Response<pb::ListInstrumentsResponse>, Status> {
        let (_, r) = split(request)?;
        let catalogue = self.evaluation.catalogue();
        let instruments = if r.all_versions {
            catalogue.all().map(instrument_to_proto).collect()
        } else {
            catalogue.latest().map(instrument_to_proto).collect()
        };
        Ok(Response::new(pb::ListInstrumentsResponse { instruments }))
    }

    async fn define_instrument(
        &self,
        request: Request<pb::DefineInstrumentRequest>,
    ) -> Result<Response<pb::DefineInstrumentResponse>, Status> {
        let (calling, r) = split(request)?;
        let instrument = instrument_from_proto(r.instrument)?;
        let position = self
            .evaluation
            .define(&calling, instrument)
            .await
            .map_err(from_app_error)?;
        Ok(Response::new(pb::DefineInstrumentResponse { position }))
    }

    async fn get_effect_report(
        &self,
        request: Request<pb::GetEffectReportRequest>,
    ) -> Result<Response<pb::GetEffectReportResponse>, Status> {
        let (calling, r) = split(request)?;
        let cohort = Cohort {
            supporter_kind: SupporterKind::optional("supporter_kind", r.supporter_kind)?,
            family_type: FamilyType::optional("family_type", r.family_type)?,
            from: c::date("from_date", &r.from_date)?,
            to: c::date("to_date", &r.to_date)?,
            baseline: MeasurementMoment::optional("baseline", r.baseline)?
                .unwrap_or(MeasurementMoment::T0),
            follow_up: MeasurementMoment::optional("follow_up", r.follow_up)?
                .unwrap_or(MeasurementMoment::T1),
        };
        let report = self
            .evaluation
            .effect_report(&calling, cohort)
            .await
            .map_err(from_app_error)?;
        Ok(Response::new(report_to_proto(&report, r.include_csv)))
    }
}
