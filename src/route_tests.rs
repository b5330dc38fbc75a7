use super::*;
use crate::upstream::url::parse_upstream_url;

fn route(name: &str, paths: &[&str], models: Option<&[&str]>) -> Route {
    Route {
        name: Arc::from(name),
        upstream: parse_upstream_url("wss://example.com").expect("url"),
        label: Arc::from("wss://example.com"),
        inject_headers: Vec::new(),
        ca: None,
        allow_paths: paths.iter().map(|p| p.to_string()).collect(),
        models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
    }
}

fn routes() -> Routes {
    Routes {
        list: vec![
            route("openai", &["/v1/responses"], None),
            route("xai", &["/v1/responses"], Some(&["grok-4", "grok-4-fast"])),
            route("azure", &["/openai/v1/responses"], None),
        ],
        default: 0,
    }
}

fn sel(route: usize, path: &str) -> Result<Selected, RouteError> {
    Ok(Selected {
        route,
        path: path.to_string(),
    })
}

#[test]
fn a_path_prefix_names_the_route_and_is_removed() {
    let r = routes();
    assert_eq!(r.select("/xai/v1/responses", None), sel(1, "/v1/responses"));
    assert_eq!(
        r.select("/azure/openai/v1/responses", Some(1)),
        sel(2, "/openai/v1/responses"),
        "the prefix wins over the tenant's route"
    );
    assert_eq!(
        r.select("/openai/v1/responses", None),
        sel(0, "/v1/responses")
    );
}

#[test]
fn without_a_prefix_the_tenants_route_then_the_default() {
    let r = routes();
    assert_eq!(r.select("/v1/responses", Some(1)), sel(1, "/v1/responses"));
    assert_eq!(r.select("/v1/responses", None), sel(0, "/v1/responses"));
}

#[test]
fn a_path_the_home_route_allows_is_not_read_as_a_prefix() {
    let r = routes();
    // An Azure tenant's own path: not the `openai` route's prefix.
    assert_eq!(
        r.select("/openai/v1/responses", Some(2)),
        sel(2, "/openai/v1/responses")
    );
    // Elsewhere it is.
    assert_eq!(
        r.select("/openai/v1/responses", None),
        sel(0, "/v1/responses")
    );
    assert_eq!(
        r.select("/openai/v1/responses", Some(1)),
        sel(0, "/v1/responses")
    );
}

#[test]
fn paths_a_route_does_not_allow_are_refused() {
    let r = routes();
    for (path, tenant) in [
        ("/v1/realtime", None),
        ("/xai/v1/realtime", None),
        ("/azure/v1/responses", None),
        ("/", None),
        ("", None),
        ("/nosuchroute/v1/responses", None),
        ("/v1/responses/", Some(1)),
    ] {
        assert_eq!(
            r.select(path, tenant),
            Err(RouteError::PathNotAllowed),
            "{path}"
        );
    }
}

#[test]
fn a_model_prefix_for_this_route_is_stripped() {
    let r = routes();
    assert_eq!(
        r.model(0, "openai/gpt-5"),
        ModelDecision::Strip("gpt-5".into())
    );
    assert_eq!(r.model(0, "gpt-5"), ModelDecision::Keep);
    assert_eq!(
        r.model(1, "xai/grok-4"),
        ModelDecision::Strip("grok-4".into())
    );
    // Only the first segment is a prefix; the rest is the model's own.
    assert_eq!(
        r.model(0, "openai/ft:gpt-5/org"),
        ModelDecision::Strip("ft:gpt-5/org".into())
    );
}

#[test]
fn a_prefix_naming_another_route_is_a_mismatch() {
    let r = routes();
    assert_eq!(
        r.model(0, "xai/grok-4"),
        ModelDecision::OtherRoute(Arc::from("xai"))
    );
    assert_eq!(
        r.model(1, "openai/gpt-5"),
        ModelDecision::OtherRoute(Arc::from("openai"))
    );
}

#[test]
fn a_prefix_that_is_no_route_is_part_of_the_model() {
    let r = routes();
    for m in [
        "accounts/fireworks/models/x",
        "meta-llama/Llama-3",
        "openai/",
        "/gpt-5",
        "",
    ] {
        assert_eq!(r.model(0, m), ModelDecision::Keep, "{m:?}");
    }
}

#[test]
fn the_allowlist_applies_to_the_model_without_its_prefix() {
    let r = routes();
    assert_eq!(r.model(1, "grok-4"), ModelDecision::Keep);
    assert_eq!(
        r.model(1, "xai/grok-4-fast"),
        ModelDecision::Strip("grok-4-fast".into())
    );
    assert_eq!(r.model(1, "grok-3"), ModelDecision::NotAllowed);
    assert_eq!(r.model(1, "xai/grok-3"), ModelDecision::NotAllowed);
    assert_eq!(r.model(1, "meta-llama/x"), ModelDecision::NotAllowed);
}
