//! Push rules: the server defaults, the user's own rules, enabled and actions, and `/sync`.

use crate::{backend_tests, common::*};
use serde_json::json;

backend_tests!(defaults_and_own_rules);

async fn defaults_and_own_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (status, all) = server.get("/_matrix/client/v3/pushrules/", Some(&alice.token)).await;
    assert_eq!(status, 200, "{all}");
    let overrides = all["global"]["override"].as_array().unwrap();
    assert_eq!(overrides[0]["rule_id"], ".m.rule.master");
    assert!(all["global"]["underride"].as_array().unwrap().iter().any(|r| r["rule_id"] == ".m.rule.message"));
    // The first sync carries them as account data, as clients expect.
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let rules = sync["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.push_rules");
    assert_eq!(rules.unwrap()["content"]["global"]["override"][0]["rule_id"], ".m.rule.master");

    let rule = "/_matrix/client/v3/pushrules/global/content/cake";
    let (status, body) =
        server.put(rule, Some(&alice.token), json!({ "pattern": "cake", "actions": ["notify"] })).await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = server.get(rule, Some(&alice.token)).await;
    assert_eq!((got["pattern"].as_str(), got["enabled"].as_bool()), (Some("cake"), Some(true)), "{got}");
    assert_eq!(server.put(&format!("{rule}/enabled"), Some(&alice.token), json!({ "enabled": false })).await.0, 200);
    assert_eq!(server.get(&format!("{rule}/enabled"), Some(&alice.token)).await.1, json!({ "enabled": false }));
    let actions = json!({ "actions": ["notify", { "set_tweak": "highlight" }] });
    assert_eq!(server.put(&format!("{rule}/actions"), Some(&alice.token), actions.clone()).await.0, 200);
    assert_eq!(server.get(&format!("{rule}/actions"), Some(&alice.token)).await.1["actions"], actions["actions"]);
    // Server-default rules: their switch and actions may change, they may not be replaced.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    assert_eq!(server.put(&format!("{master}/enabled"), Some(&alice.token), json!({ "enabled": true })).await.0, 200);
    let (status, _) = server.put(master, Some(&alice.token), json!({ "actions": [], "conditions": [] })).await;
    assert_eq!(status, 400);
    assert_eq!(server.request(reqwest::Method::DELETE, rule, Some(&alice.token), None).await.0, 200);
    assert_error(&server.get(rule, Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_error(&server.request(reqwest::Method::DELETE, rule, Some(&alice.token), None).await, 404, "M_NOT_FOUND");
    // Another user still has the defaults only.
    let bob = server.register("bob").await;
    assert_error(&server.get(rule, Some(&bob.token)).await, 404, "M_NOT_FOUND");
    let (_, master_of_bob) = server.get(&format!("{master}/enabled"), Some(&bob.token)).await;
    assert_eq!(master_of_bob, json!({ "enabled": false }));
}
