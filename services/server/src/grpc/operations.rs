//! `naast.v1.OperationsService`: a backup of the running server, for administrators. Every
//! call is recorded in the audit log.

use super::households::split;
use crate::backup::{self, Piece, Sources};
use naast_proto::pb;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Pieces of a backup queued for the client: the copy waits for a slow one.
const QUEUED_PIECES: usize = 4;

/// The operations service.
#[derive(Clone)]
pub struct OperationsApi {
    sources: Arc<Sources>,
}

impl OperationsApi {
    /// Backs up `sources`.
    pub fn new(sources: Sources) -> Self {
        Self {
            sources: Arc::new(sources),
        }
    }
}

type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::operations_service_server::OperationsService for OperationsApi {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let (calling, pb::BackupRequest {}) = split(request)?;
        super::status::admin_only(
            &calling,
            self.sources.auditor.as_ref(),
            vec!["backup".to_owned()],
            "only administrators make backups",
        )
        .await?;
        let (pieces, queued) = tokio::sync::mpsc::channel(QUEUED_PIECES);
        let sources = self.sources.clone();
        tokio::task::spawn_blocking(move || {
            let mut send = |piece: Piece| {
                let piece = match piece {
                    Piece::Data { part, data } => {
                        pb::backup_response::Piece::Data(pb::BackupData { part, data })
                    }
                    Piece::Manifest(json) => pb::backup_response::Piece::Manifest(json),
                };
                pieces
                    .blocking_send(Ok(pb::BackupResponse { piece: Some(piece) }))
                    .is_ok()
            };
            match backup::produce(&sources, &mut send) {
                Ok(()) => tracing::info!("backup sent"),
                Err(backup::BackupError::Cancelled) => {
                    tracing::warn!("backup cancelled by its receiver")
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup failed");
                    let _ = pieces.blocking_send(Err(Status::unavailable(format!(
                        "the backup could not be made: {e}"
                    ))));
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(queued),
        )))
    }
}
