// FlowForge Durable on Azure: a storage account with hierarchical namespace and shared keys
// off (the data lake and the task hub), the Linux function app running the custom handler
// from a package in Blob Storage (no Azure Files content share: it cannot use a managed
// identity), its system-assigned identity with the roles the host and the engine need,
// and Application Insights.
//
// Deploy (see deploy/README.md):
//   az deployment group create -g <rg> -f deploy/main.bicep -p namePrefix=<prefix>
//   az storage blob upload --auth-mode login --account-name <storageAccountName> \
//     -c deployments -n flowforge-app.zip -f deploy/out/flowforge-app.zip
//   az functionapp restart -g <rg> -n <functionAppName>
// Not compiled here: the Bicep CLI is not installable on our build machines.

@description('Prefix of every resource name (lowercase letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string

@description('Location of every resource.')
param location string = resourceGroup().location

@description('Task hub name: prefix of the engine tables, queues and containers.')
param taskHub string = 'flowforge'

@description('ElasticPremium (the supported default) or FlexConsumption (custom handlers are accepted there; not verified with this app).')
@allowed(['ElasticPremium', 'FlexConsumption'])
param hostingPlan string = 'ElasticPremium'

@description('Elastic Premium plan size.')
@allowed(['EP1', 'EP2', 'EP3'])
param planSku string = 'EP1'

@description('Instance memory of the Flex Consumption plan (MB); the medallion needs about 512 MB per run.')
@allowed([2048, 4096])
param flexInstanceMemoryMB int = 2048

@description('functionTimeout the host enforces (overrides host.json). Elastic Premium guarantees 60 minutes; Flex Consumption defaults to 30. The handler answers each invocation well within it.')
param functionTimeout string = '00:30:00'

@description('Start a medallion run for each new CSV in the landing container (Event Grid system topic on the account, subscription to the LandingBlobCreated function, dead letters in the eventgrid-deadletters container). The subscription needs the function to exist: deploy the app package first, then deploy again with this set to true.')
param landingEvents bool = false

@description('Where the alerts (failure rate, dead letters, oldest queue message) are mailed; empty: they show in the portal only.')
param alertEmail string = ''

@description('Alert when more than this share of the runs that ended in 15 minutes failed (0-1).')
param failureRateThreshold string = '0.1'

@description('Alert when the oldest visible message of a queue is older than this many seconds.')
param oldestMessageSeconds int = 300

@description('Retention of finished instances, applied hourly by the Retention timer function, e.g. completed=7d,failed=30d,terminated=30d; empty: kept until purged.')
param retention string = ''

@description('Keep the status index (listings by status or creation window read only their page at any task-hub size; about three more table transactions per orchestration).')
param statusIndex bool = false

@description('OpenLineage endpoint (Marquez, a Purview OpenLineage connector, …) that receives the RunEvent of each medallion run at {url}/api/v1/lineage; empty: the events are only written to the lake (gold/_lineage/).')
param openLineageUrl string = ''

var isFlex = hostingPlan == 'FlexConsumption'
var storageName = take('${namePrefix}lake${uniqueString(resourceGroup().id)}', 24)
var dataContainers = ['landing', 'bronze', 'silver', 'gold', 'rejects']
var packageContainer = 'deployments'
var eventDeadLetterContainer = 'eventgrid-deadletters'
var packageUri = 'https://${storageName}.blob.${environment().suffixes.storage}/${packageContainer}/flowforge-app.zip'
// Built-in role definition ids.
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  sku: { name: 'Standard_ZRS' }
  kind: 'StorageV2'
  properties: {
    isHnsEnabled: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in concat(dataContainers, [packageContainer, eventDeadLetterContainer]): {
  parent: blobService
  name: name
  properties: { publicAccess: 'None' }
}]

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  properties: { sku: { name: 'PerGB2018' }, retentionInDays: 30 }
}

// Workspace-based (classic Application Insights is retired). The app's connection string
// turns on the engine's OpenTelemetry export (functions/src/telemetry.rs).
resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-insights'
  location: location
  kind: 'web'
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id }
}

resource alertGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-alerts'
  location: 'global'
  properties: {
    groupShortName: 'flowforge'
    enabled: true
    emailReceivers: [{ name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

// Log alerts over the engine's metrics (customMetrics; names as in
// orchestrator/src/telemetry/metrics.rs), each evaluated every 5 minutes over 15.
var alertRules = [
  {
    name: 'failure-rate'
    title: 'FlowForge: runs failing'
    severity: 2
    measure: 'rate'
    threshold: json(failureRateThreshold)
    query: 'customMetrics | where name == "flowforge.orchestrations.ended" | extend status = tostring(customDimensions["status"]) | summarize failed = sumif(valueSum, status == "Failed"), ended = sum(valueSum) | where ended > 0 | extend rate = failed / ended'
  }
  {
    name: 'dead-letters'
    title: 'FlowForge: messages dead-lettered'
    severity: 2
    measure: 'letters'
    threshold: 0
    query: 'customMetrics | where name == "flowforge.dead_letters" | summarize letters = sum(valueSum)'
  }
  {
    name: 'queue-age'
    title: 'FlowForge: work waiting in a queue'
    severity: 3
    measure: 'age'
    threshold: oldestMessageSeconds
    query: 'customMetrics | where name == "flowforge.queue.oldest_age" | summarize age = max(valueMax)'
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in alertRules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  properties: {
    displayName: rule.title
    severity: rule.severity
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [insights.id]
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: rule.measure
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: empty(alertEmail) ? [] : [alertGroup.id] }
  }
}]

// Runs by status, the slowest activities, queues and dead letters (deploy/workbook.json).
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'flowforge-workbook')
  location: location
  kind: 'shared'
  properties: {
    displayName: 'FlowForge Durable'
    category: 'workbook'
    sourceId: insights.id
    serializedData: loadTextContent('workbook.json')
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${namePrefix}-plan'
  location: location
  sku: isFlex ? { name: 'FC1', tier: 'FlexConsumption' } : { name: planSku, tier: 'ElasticPremium' }
  kind: isFlex ? 'functionapp' : 'elastic'
  properties: { reserved: true }
}

// One setting serves the host's triggers and the engine's own clients: the host's
// identity-based connection (the engine reads the same AzureWebJobsStorage__* settings
// and uses the App Service identity endpoint, IDENTITY_ENDPOINT).
var commonSettings = [
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'AzureFunctionsJobHost__functionTimeout', value: functionTimeout }
  { name: 'FLOWFORGE_TASK_HUB', value: taskHub }
  { name: 'FLOWFORGE_CONTROL_PARTITIONS', value: '4' }
]
var retentionSettings = empty(retention) ? [] : [
  { name: 'FLOWFORGE_RETENTION', value: retention }
]
var indexSettings = statusIndex ? [
  { name: 'FLOWFORGE_STATUS_INDEX', value: 'true' }
] : []
var lineageSettings = empty(openLineageUrl) ? [] : [
  { name: 'OPENLINEAGE_URL', value: openLineageUrl }
]
// Elastic Premium: run from the package blob, read with the app's identity; no
// WEBSITE_CONTENTAZUREFILECONNECTIONSTRING / WEBSITE_CONTENTSHARE (Azure Files).
var premiumSettings = [
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
  { name: 'WEBSITE_RUN_FROM_PACKAGE', value: packageUri }
  { name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID', value: 'SystemAssigned' }
]

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: '${namePrefix}-flowforge'
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://${storageName}.blob.${environment().suffixes.storage}/${packageContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: flexInstanceMemoryMB }
      runtime: { name: 'custom', version: '1.0' }
    } : null
    siteConfig: {
      linuxFxVersion: ''
      minTlsVersion: '1.2'
      appSettings: isFlex ? concat(commonSettings, lineageSettings, retentionSettings, indexSettings) : concat(commonSettings, lineageSettings, retentionSettings, indexSettings, premiumSettings)
    }
  }
}

// The host's own blobs (leases, timer schedule monitor, keys) need Blob Data Owner; the
// engine uses blobs (payloads, lake), queues (work, timers) and tables (state, history,
// dead letters).
resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, app.id, roles.blobDataOwner)
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
  }
}

resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, app.id, roles.queueDataContributor)
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
  }
}

resource tableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, app.id, roles.tableDataContributor)
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
  }
}

// Landing files start runs: BlobCreated events of the landing container go to the
// LandingBlobCreated function (one run per event id, so Event Grid's redeliveries start
// nothing twice); events it cannot take after Event Grid's retries are dead-lettered as
// blobs, written with the system topic's own identity (the account takes no shared keys).
resource landingTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (landingEvents) {
  name: '${namePrefix}-lake-events'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource deadLetterRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (landingEvents) {
  scope: storage
  name: guid(storage.id, 'landing-events', roles.blobDataContributor)
  properties: {
    principalId: landingTopic.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
  }
}

resource landingSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (landingEvents) {
  parent: landingTopic
  name: 'landing-blob-created'
  dependsOn: [deadLetterRole]
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/LandingBlobCreated'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/landing/blobs/'
      subjectEndsWith: '.csv'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: storage.id, blobContainerName: eventDeadLetterContainer }
      }
    }
  }
}

output functionAppName string = app.name
output storageAccountName string = storage.name
output packageUri string = packageUri
