//! Buyers' auto-bid rule sets: each `SetRules` or `CancelRules` exchange, stored (with the
//! sealed rule set) before it is answered.

use leadgate_protocol::{Request, Response, WireAppended};
use leadgate_verifier::autobid::{RulesCancel, SealedRuleSet};

use super::{Gateway, LinkError};

impl Gateway {
    /// Sends a sealed rule set to the enclave and stores its `rules.set` with it.
    ///
    /// # Errors
    /// [`LinkError`]s (the enclave's refusal as [`LinkError::Enclave`]); a storage failure
    /// also drops the link.
    pub async fn set_rules(&self, rules: SealedRuleSet) -> Result<WireAppended, LinkError> {
        let (mut link, resp) = self
            .exchange_appending(&Request::SetRules {
                rules: rules.clone(),
            })
            .await?;
        let appended = match resp {
            Response::RulesLogged { appended } => appended,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        if let Err(e) = self.store.store_rules(&appended, Some(&rules)).await {
            link.conn = None;
            return Err(e.into());
        }
        self.stored_to(appended.index + 1);
        Ok(appended)
    }

    /// Sends a buyer's cancellation to the enclave and stores its `rules.cancelled`.
    ///
    /// # Errors
    /// As [`Gateway::set_rules`].
    pub async fn cancel_rules(&self, cancel: RulesCancel) -> Result<WireAppended, LinkError> {
        let (mut link, resp) = self
            .exchange_appending(&Request::CancelRules { cancel })
            .await?;
        let appended = match resp {
            Response::RulesLogged { appended } => appended,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        if let Err(e) = self.store.store_rules(&appended, None).await {
            link.conn = None;
            return Err(e.into());
        }
        self.stored_to(appended.index + 1);
        Ok(appended)
    }
}
