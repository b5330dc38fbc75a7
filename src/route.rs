//! Routes: which upstream a session goes to, and what a `model` string means on it.
//!
//! A route is a name, an upstream URL, the headers injected there, the paths clients may
//! open, and optionally the models they may ask for. Routes come from `[[route]]` tables of
//! the config file; without one, the `--upstream*` flags make a single route named
//! `default`. Pure functions only (no sockets): the handshake picks the route with
//! [`Routes::select`], the session decides each `response.create`'s model with
//! [`Routes::model`].
//!
//! - **By tenant**: a key's `route=NAME` in the keys file, else the default route
//!   (`--default-route`, else the first), when that route allows the path as it is.
//! - **By path prefix** otherwise: `/xai/v1/responses` → route `xai`, forwarded as
//!   `/v1/responses`.
//!
//! **Model prefixes**: `"model": "openai/gpt-5"` on route `openai` goes upstream as
//! `"gpt-5"`; a prefix naming *another* route is a `model_route_mismatch`; a prefix that is
//! no route name (`accounts/fireworks/models/x`) is part of the model and left alone.

use std::path::PathBuf;
use std::sync::Arc;

use crate::upstream::url::UpstreamUrl;

/// One route, validated.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name (path prefix, model prefix, keys-file `route=`, records, metrics).
    pub name: Arc<str>,
    /// Where it dials.
    pub upstream: UpstreamUrl,
    /// The upstream URL as written (records and logs).
    pub label: Arc<str>,
    /// Headers injected upstream in managed mode, `${VAR}` already expanded.
    pub inject_headers: Vec<(String, String)>,
    /// Extra CA bundle for this upstream.
    pub ca: Option<PathBuf>,
    /// Paths clients may open on it (after the route prefix is removed).
    pub allow_paths: Vec<String>,
    /// Models clients may ask for (after the prefix is removed); `None` = any.
    pub models: Option<Vec<String>>,
}

/// What the handshake chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Index into [`Routes::list`].
    pub route: usize,
    /// The path to forward (the route prefix removed), without the query.
    pub path: String,
}

/// Why no route serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is not one of the route's allowed paths.
    #[error("path not allowed on this route")]
    PathNotAllowed,
}

/// What the session does with a `response.create`'s model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelDecision {
    /// Forward the message unchanged.
    Keep,
    /// Forward it with `model` replaced by this (the route prefix removed).
    Strip(String),
    /// The prefix names another route: refuse (`model_route_mismatch`).
    OtherRoute(Arc<str>),
    /// Not in the route's allowlist: refuse (`model_not_allowed`).
    NotAllowed,
}

/// Every route, and the default one.
#[derive(Debug, Clone)]
pub struct Routes {
    /// The routes, in config order.
    pub list: Vec<Route>,
    /// Index of the default route.
    pub default: usize,
}

impl Routes {
    /// Index of the route named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|r| &*r.name == name)
    }

    /// The route for a request to `path` (no query) from a tenant whose default route is
    /// `tenant_route`: the tenant's route (else the default) when it allows the path as
    /// is; otherwise a first path segment naming a route, which is removed and the rest
    /// must be allowed there. (The path as is comes first so an Azure route's own
    /// `/openai/v1/responses` is not read as a prefix for a route named `openai`.)
    pub fn select(&self, path: &str, tenant_route: Option<usize>) -> Result<Selected, RouteError> {
        let home = tenant_route.unwrap_or(self.default);
        if self
            .list
            .get(home)
            .is_some_and(|r| r.allow_paths.iter().any(|p| p == path))
        {
            return Ok(Selected {
                route: home,
                path: path.to_string(),
            });
        }
        let (first, rest) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .ok_or(RouteError::PathNotAllowed)?;
        let route = self.index_of(first).ok_or(RouteError::PathNotAllowed)?;
        let fwd = format!("/{rest}");
        if self.list[route].allow_paths.contains(&fwd) {
            Ok(Selected { route, path: fwd })
        } else {
            Err(RouteError::PathNotAllowed)
        }
    }

    /// What to do with `model` in a `response.create` on route `route`.
    pub fn model(&self, route: usize, model: &str) -> ModelDecision {
        let Some(r) = self.list.get(route) else {
            return ModelDecision::Keep;
        };
        let (bare, stripped) = match model.split_once('/') {
            Some((prefix, rest)) if !rest.is_empty() => match self.index_of(prefix) {
                Some(i) if i == route => (rest, true),
                Some(i) => return ModelDecision::OtherRoute(self.list[i].name.clone()),
                None => (model, false),
            },
            _ => (model, false),
        };
        if let Some(allowed) = &r.models {
            if !allowed.iter().any(|m| m == bare) {
                return ModelDecision::NotAllowed;
            }
        }
        if stripped {
            ModelDecision::Strip(bare.to_string())
        } else {
            ModelDecision::Keep
        }
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
