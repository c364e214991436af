//! The OpenAPI document as served: the one in the repository (`functions/openapi.json`)
//! with the orchestrations this app registers as the `enum` of the start routes' `name`
//! and of a schedule's `orchestration`, so a client (or a fuzzer) knows which names it may
//! start.

use serde_json::Value;

/// The OpenAPI document of this API as kept in the repository.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The start routes, whose `name` parameter lists the registered orchestrations.
const START_ROUTES: [&str; 2] = [
    "/orchestrators/{name}",
    "/orchestrators/{name}/{instanceId}",
];

/// The document to serve for an app that registers `orchestrations`.
pub fn served(orchestrations: &[String]) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(OPENAPI) else {
        return OPENAPI.to_owned();
    };
    for route in START_ROUTES {
        let parameters = document
            .pointer_mut(&format!("/paths/{}/post/parameters", escape(route)))
            .and_then(Value::as_array_mut);
        for parameter in parameters.into_iter().flatten() {
            if parameter["name"] == "name" && parameter["in"] == "path" {
                parameter["schema"]["enum"] =
                    orchestrations.iter().cloned().map(Value::from).collect();
            }
        }
    }
    if let Some(schema) =
        document.pointer_mut("/components/schemas/ScheduleSpec/properties/orchestration")
    {
        schema["enum"] = orchestrations.iter().cloned().map(Value::from).collect();
    }
    document.to_string()
}

/// A JSON pointer segment (`~` and `/` escaped).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_routes_list_the_registered_orchestrations() {
        let served: Value =
            serde_json::from_str(&served(&["demo".into(), "medallion".into()])).unwrap();
        for route in START_ROUTES {
            let parameters = served["paths"][route]["post"]["parameters"]
                .as_array()
                .unwrap();
            let name = parameters.iter().find(|p| p["name"] == "name").unwrap();
            assert_eq!(
                name["schema"]["enum"],
                serde_json::json!(["demo", "medallion"])
            );
        }
        let mut stripped = served;
        for route in START_ROUTES {
            for parameter in stripped["paths"][route]["post"]["parameters"]
                .as_array_mut()
                .unwrap()
            {
                if let Some(schema) = parameter["schema"].as_object_mut() {
                    schema.remove("enum");
                }
            }
        }
        let orchestration =
            &mut stripped["components"]["schemas"]["ScheduleSpec"]["properties"]["orchestration"];
        assert_eq!(
            orchestration["enum"],
            serde_json::json!(["demo", "medallion"])
        );
        orchestration.as_object_mut().unwrap().remove("enum");
        let file: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(stripped, file, "nothing else differs from the file");
    }
}
