//! The functions of the app: each has a folder with a `function.json` in the packaged app,
//! and a route `POST /{name}` in `flowforge serve`. A test checks the two agree.

/// What triggers a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// HTTP, bridged into the management API.
    Http,
    /// A control queue partition.
    Control(u32),
    /// The work-item queue.
    WorkItems,
    /// A dead-letter queue (`<queue>-poison`) of a control partition.
    ControlPoison(u32),
    /// The work items' dead-letter queue.
    WorkItemsPoison,
    /// The schedules' timer.
    Timer,
    /// The retention purge's timer (hourly; a no-op unless `FLOWFORGE_RETENTION` is set).
    Retention,
    /// Event Grid events of the landing container (`BlobCreated` starts the medallion).
    EventGrid,
}

/// Control queue partitions the app's function definitions cover (set
/// `FLOWFORGE_CONTROL_PARTITIONS` to this).
pub const PARTITIONS: u32 = 4;

/// Every function of the app.
pub fn all() -> Vec<(String, Trigger)> {
    let mut functions = vec![
        ("HttpStart".to_owned(), Trigger::Http),
        ("HttpInstances".to_owned(), Trigger::Http),
        ("HttpInstance".to_owned(), Trigger::Http),
        ("HttpOpenApi".to_owned(), Trigger::Http),
        ("HttpDeadLetters".to_owned(), Trigger::Http),
        ("HttpDashboard".to_owned(), Trigger::Http),
        ("WorkItems".to_owned(), Trigger::WorkItems),
        ("WorkItemsPoison".to_owned(), Trigger::WorkItemsPoison),
        ("Schedules".to_owned(), Trigger::Timer),
        ("Retention".to_owned(), Trigger::Retention),
        ("LandingBlobCreated".to_owned(), Trigger::EventGrid),
    ];
    for p in 0..PARTITIONS {
        functions.push((format!("Orchestrator{p:02}"), Trigger::Control(p)));
        functions.push((
            format!("OrchestratorPoison{p:02}"),
            Trigger::ControlPoison(p),
        ));
    }
    functions
}

/// The trigger of a function name.
pub fn trigger_of(name: &str) -> Option<Trigger> {
    all().into_iter().find(|(n, _)| n == name).map(|(_, t)| t)
}
