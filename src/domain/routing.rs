//! Routing: an account's ordered rules (parsed and checked whole by `route set`, stored as one document),
//! the first-match choice of a rule for a payment, and the processors it names, in failover order. An
//! account without rules sends everything to the built-in `sandbox`, as before rules existed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::processors::{self, SANDBOX};
use crate::connectors::processor::Processor;
use crate::model::card::Scheme;
use crate::model::payment::UseCase;
use crate::store::{DynStore, ProcessorRecord, StoreError, Ts};
use crate::vault::Vault;

/// The rule name of a payment of an account without rules.
pub const DEFAULT_RULE: &str = "default: all payments to sandbox";
/// The rule name of a payment no rule matched (it fails with `ROUTING_ERROR`).
pub const NO_RULE: &str = "none: no rule matched";
/// The processor recorded on a payment no rule matched.
pub const NO_PROCESSOR: &str = "none";

/// Which payments a rule takes; every condition is optional, and all given must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Vec<Scheme>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_case: Option<Vec<UseCase>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub when: When,
    /// Processor names, primary first.
    pub processors: Vec<String>,
}

/// The facts of a payment that rules look at.
pub struct Facts<'a> {
    pub currency_code: &'a str,
    pub scheme: &'a str,
    pub use_case: UseCase,
    pub amount: i64,
}

impl Rule {
    fn matches(&self, facts: &Facts<'_>) -> bool {
        let w = &self.when;
        w.currency_code
            .as_ref()
            .map_or(true, |c| c.iter().any(|c| c == facts.currency_code))
            && w.scheme
                .as_ref()
                .map_or(true, |s| s.iter().any(|s| s.as_str() == facts.scheme))
            && w.use_case
                .as_ref()
                .map_or(true, |u| u.contains(&facts.use_case))
            && w.amount_min.map_or(true, |min| facts.amount >= min)
            && w.amount_max.map_or(true, |max| facts.amount <= max)
    }
}

/// Parses and checks a rules document (a JSON array of rules) against the account's processor names;
/// the error names the rule at fault.
pub fn parse_rules(text: &str, known: &HashSet<String>) -> Result<Vec<Rule>, String> {
    let items: Vec<Value> = serde_json::from_str(text)
        .map_err(|e| format!("the rules must be a JSON array of rules: {e}"))?;
    let mut rules = Vec::with_capacity(items.len());
    let mut names = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let label = match item.get("name").and_then(Value::as_str) {
            Some(name) => format!("rule {name:?}"),
            None => format!("rule #{}", i + 1),
        };
        let rule: Rule = serde_json::from_value(item).map_err(|e| format!("{label}: {e}"))?;
        check_rule(&rule, known).map_err(|e| format!("{label}: {e}"))?;
        if !names.insert(rule.name.clone()) {
            return Err(format!("{label}: another rule has this name"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn check_rule(rule: &Rule, known: &HashSet<String>) -> Result<(), String> {
    if rule.name.trim().is_empty() || rule.name.len() > 100 {
        return Err("`name` must be 1 to 100 characters".into());
    }
    if rule.name == DEFAULT_RULE || rule.name == NO_RULE {
        return Err("this name is reserved".into());
    }
    if rule.processors.is_empty() {
        return Err("`processors` must name at least one processor".into());
    }
    let mut seen = HashSet::new();
    for name in &rule.processors {
        if !known.contains(name) {
            return Err(format!("unknown processor {name:?}"));
        }
        if !seen.insert(name) {
            return Err(format!("processor {name:?} is named twice"));
        }
    }
    let w = &rule.when;
    if let Some(codes) = &w.currency_code {
        if let Some(bad) = codes
            .iter()
            .find(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "`when.currency_code`: {bad:?} is not a currency code"
            ));
        }
    }
    if w.amount_min.is_some_and(|a| a < 0) || w.amount_max.is_some_and(|a| a < 0) {
        return Err("`when.amount_min` and `when.amount_max` must not be negative".into());
    }
    if let (Some(min), Some(max)) = (w.amount_min, w.amount_max) {
        if min > max {
            return Err("`when.amount_min` is above `when.amount_max`".into());
        }
    }
    Ok(())
}

/// Where a payment goes: its rule's name, and the keys of its processors in failover order (`sandbox`
/// or a processor id). No processors: no rule matched.
#[derive(Clone, Debug)]
pub struct Route {
    pub rule: String,
    pub chain: Vec<String>,
}

impl Route {
    /// The processor recorded on the payment before it is authorized.
    pub fn first(&self) -> &str {
        self.chain.first().map_or(NO_PROCESSOR, String::as_str)
    }
}

/// An account's rules (`None`: it has none) and its processor names to keys, as read together.
#[derive(Clone)]
struct Table {
    rules: Option<Arc<Vec<Rule>>>,
    keys: Arc<HashMap<String, String>>,
}

const CACHE_MAX_ACCOUNTS: usize = 10_000;

/// Picks routes and builds the connectors of an account's processors (cached by processor id; whether
/// a processor is still live is read at every call, so a removal from the CLI takes effect at once).
/// An account's rules and processor names are read at most once per `ttl` (the auth cache window), so
/// a payment costs no read of them; `route set` applies on every node within that window.
pub struct Routing {
    store: DynStore,
    vault: Arc<Vault>,
    sandbox: Arc<dyn Processor>,
    connectors: Mutex<HashMap<Uuid, Arc<dyn Processor>>>,
    /// Where this server is reached, which some processors want on every payment.
    public_url: String,
    ttl: Duration,
    tables: RwLock<HashMap<Uuid, (Table, Instant)>>,
}

impl Routing {
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        sandbox: Arc<dyn Processor>,
        public_url: String,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            vault,
            sandbox,
            connectors: Mutex::new(HashMap::new()),
            public_url,
            ttl,
            tables: RwLock::new(HashMap::new()),
        }
    }

    /// A live processor of any account and the key that checks its notifications; `None` for an
    /// unknown or removed processor, or one that sends no notifications.
    pub async fn notification_key(
        &self,
        id: Uuid,
    ) -> Result<Option<(ProcessorRecord, processors::NotificationKey)>, StoreError> {
        let Some(record) = self
            .store
            .get_processor(id)
            .await?
            .filter(|p| p.removed_at.is_none())
        else {
            return Ok(None);
        };
        match processors::notification_key(&self.vault, &record).await {
            Ok(key) => Ok(Some((record, key))),
            Err(why) => {
                tracing::info!(processor = %id, why, "no notification key");
                Ok(None)
            }
        }
    }

    /// The account's rules and processor keys, from the cache while it is fresh.
    async fn table(&self, account_id: Uuid) -> Result<Table, StoreError> {
        let cached = self.tables.read().ok().and_then(|map| {
            map.get(&account_id)
                .filter(|(_, read_at)| read_at.elapsed() < self.ttl)
                .map(|(table, _)| table.clone())
        });
        if let Some(table) = cached {
            return Ok(table);
        }
        let rules = match self.store.get_routing_rules(account_id).await? {
            None => None,
            // `[]` is no rules at all: the sandbox takes everything again.
            Some(text) => serde_json::from_str::<Vec<Rule>>(&text)
                .map(|rules| Some(Arc::new(rules)).filter(|r| !r.is_empty()))
                .map_err(|e| StoreError::Corrupt(format!("routing rules: {e}")))?,
        };
        // Without rules every payment goes to the sandbox: the processor names are not needed.
        let keys = match rules {
            Some(_) => Arc::new(self.keys(account_id).await?),
            None => Arc::new(HashMap::new()),
        };
        let table = Table { rules, keys };
        if !self.ttl.is_zero() {
            if let Ok(mut map) = self.tables.write() {
                if map.len() >= CACHE_MAX_ACCOUNTS {
                    map.retain(|_, (_, read_at)| read_at.elapsed() < self.ttl);
                    if map.len() >= CACHE_MAX_ACCOUNTS {
                        map.clear();
                    }
                }
                map.insert(account_id, (table.clone(), Instant::now()));
            }
        }
        Ok(table)
    }

    /// Processor names of the account to the keys recorded on payments.
    async fn keys(&self, account_id: Uuid) -> Result<HashMap<String, String>, StoreError> {
        let mut keys: HashMap<String, String> = self
            .store
            .list_processors(Some(account_id))
            .await?
            .into_iter()
            .map(|p| (p.name, p.id.to_string()))
            .collect();
        keys.insert(SANDBOX.to_owned(), SANDBOX.to_owned());
        Ok(keys)
    }

    fn chain(rule: &Rule, keys: &HashMap<String, String>) -> Vec<String> {
        // A processor removed since the rules were set stays in the chain under its name: trying it
        // fails over to the next.
        rule.processors
            .iter()
            .map(|name| keys.get(name).cloned().unwrap_or_else(|| name.clone()))
            .collect()
    }

    /// The route of a payment: the first rule that matches; without rules, the sandbox.
    pub async fn route(&self, account_id: Uuid, facts: &Facts<'_>) -> Result<Route, StoreError> {
        let table = self.table(account_id).await?;
        let Some(rules) = &table.rules else {
            return Ok(Route {
                rule: DEFAULT_RULE.to_owned(),
                chain: vec![SANDBOX.to_owned()],
            });
        };
        let Some(rule) = rules.iter().find(|r| r.matches(facts)) else {
            return Ok(Route {
                rule: NO_RULE.to_owned(),
                chain: Vec::new(),
            });
        };
        Ok(Route {
            rule: rule.name.clone(),
            chain: Self::chain(rule, &table.keys),
        })
    }

    /// The processors still to try for a payment routed by `rule` and now at `current`: `current` and
    /// those after it in the rule (just `current` if the rule changed since).
    pub async fn remaining(
        &self,
        account_id: Uuid,
        rule: &str,
        current: &str,
    ) -> Result<Vec<String>, StoreError> {
        if rule == NO_RULE || current == NO_PROCESSOR {
            return Ok(Vec::new());
        }
        if rule == DEFAULT_RULE {
            return Ok(vec![current.to_owned()]);
        }
        let table = self.table(account_id).await?;
        let Some(found) = table
            .rules
            .as_ref()
            .and_then(|rules| rules.iter().find(|r| r.name == rule))
        else {
            return Ok(vec![current.to_owned()]);
        };
        let chain = Self::chain(found, &table.keys);
        Ok(match chain.iter().position(|k| k == current) {
            Some(at) => chain[at..].to_vec(),
            None => vec![current.to_owned()],
        })
    }

    /// The connector of processor `key` of the account, if it is live.
    pub async fn processor(&self, account_id: Uuid, key: &str) -> Option<Arc<dyn Processor>> {
        if key == SANDBOX {
            return Some(self.sandbox.clone());
        }
        let id: Uuid = key.parse().ok()?;
        let record = match self.store.get_processor(id).await {
            Ok(Some(record)) if record.account_id == account_id && record.removed_at.is_none() => {
                record
            }
            Ok(_) => {
                self.cache().remove(&id);
                return None;
            }
            Err(err) => {
                tracing::warn!(processor = %id, error = %err, "processor not readable");
                return None;
            }
        };
        if let Some(found) = self.cache().get(&id) {
            return Some(found.clone());
        }
        match processors::connector(&self.vault, &record, &self.public_url).await {
            Ok(connector) => {
                self.cache().insert(id, connector.clone());
                Some(connector)
            }
            Err(why) => {
                tracing::warn!(processor = %id, why, "processor connector not built");
                None
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<dyn Processor>>> {
        crate::lock(&self.connectors)
    }
}

/// Checks a rules document against the account's live processors and stores it, replacing the old one.
pub async fn set_rules(
    store: &DynStore,
    account_id: Uuid,
    text: &str,
    actor: &str,
) -> Result<Vec<Rule>, RoutingError> {
    if store.get_account(account_id).await?.is_none() {
        return Err(RoutingError::UnknownAccount(account_id));
    }
    let mut known: HashSet<String> = store
        .list_processors(Some(account_id))
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    known.insert(SANDBOX.to_owned());
    let rules = parse_rules(text, &known).map_err(RoutingError::Invalid)?;
    let stored = serde_json::to_string(&rules).map_err(|e| RoutingError::Invalid(e.to_string()))?;
    let audit = crate::store::AuditEvent::new(
        Some(account_id),
        actor,
        crate::store::Action::RouteSet,
        None,
        "success",
    );
    store
        .set_routing_rules(account_id, &stored, Ts::now(), &audit)
        .await?;
    Ok(rules)
}

/// The account's rules (an empty list when it has none).
pub async fn show_rules(store: &DynStore, account_id: Uuid) -> Result<Vec<Rule>, RoutingError> {
    if store.get_account(account_id).await?.is_none() {
        return Err(RoutingError::UnknownAccount(account_id));
    }
    match store.get_routing_rules(account_id).await? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| RoutingError::Store(StoreError::Corrupt(format!("routing rules: {e}")))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> HashSet<String> {
        ["sandbox", "stripe-eu"].map(str::to_owned).into()
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = parse_rules(
            r#"[{"name":"big-eur","when":{"currency_code":["EUR"],"amount_min":1000},"processors":["stripe-eu","sandbox"]},
                {"name":"visa","when":{"scheme":["VISA"],"use_case":["ONE_OFF"]},"processors":["sandbox"]}]"#,
            &known(),
        )
        .unwrap();
        let facts = |currency_code, amount| Facts {
            currency_code,
            scheme: "VISA",
            use_case: UseCase::OneOff,
            amount,
        };
        let first = |f: &Facts<'_>| rules.iter().find(|r| r.matches(f)).map(|r| r.name.as_str());
        assert_eq!(first(&facts("EUR", 1000)), Some("big-eur"));
        assert_eq!(first(&facts("EUR", 999)), Some("visa"));
        let mit = Facts {
            use_case: UseCase::SubsequentRecurring,
            ..facts("USD", 5)
        };
        assert_eq!(first(&mit), None);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        let err = |text: &str| parse_rules(text, &known()).unwrap_err();
        assert!(err(r#"[{"name":"a","processors":["nope"]}]"#)
            .starts_with("rule \"a\": unknown processor \"nope\""));
        assert!(err(r#"[{"name":"b","processors":[]}]"#).starts_with("rule \"b\":"));
        assert!(
            err(r#"[{"name":"c","when":{"colour":1},"processors":["sandbox"]}]"#)
                .starts_with("rule \"c\":")
        );
        assert!(
            err(r#"[{"name":"d","when":{"currency_code":["eur"]},"processors":["sandbox"]}]"#)
                .starts_with("rule \"d\":")
        );
        assert!(err(r#"[{"processors":["sandbox"]}]"#).starts_with("rule #1:"));
        assert!(err(r#"{"name":"x"}"#).starts_with("the rules must be"));
    }
}
