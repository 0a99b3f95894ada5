// lakeinfer on Azure: a Flex Consumption (FC1) Node 22 Function App with one user-assigned identity,
// identity-based host storage, an ADLS Gen2 data account (input, output, models), Key Vault (RBAC;
// created only when an external data account's connection string is given), Application Insights, and
// least-privilege role assignments for the app and for the operator who deploys it (azd sets
// principalId to the signed-in user). No shared keys on the accounts this template creates, no basic
// publishing credentials.
targetScope = 'resourceGroup'

@description('Name of the azd environment; used to name resources.')
param environmentName string

@minLength(1)
@description('Location of every resource: a region where Flex Consumption is offered (the list Microsoft\'s Flex Consumption azd templates allow).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string = resourceGroup().location

@description('Memory of each instance in MB. An activity holds the model, its sessions and images in flight (500-700 MiB measured for YOLACT-ResNet50 with one session), so 512 MB instances are not offered. 2048 MB gives 1 vCPU, 4096 MB gives 2.')
@allowed([2048, 4096])
param instanceMemoryMB int = 4096

@description('Most instances the app scales out to (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Object id of the operator who deploys (azd sets it to the signed-in user): granted Storage Blob Data Contributor on the data account so the lakeinfer CLI can upload models and images and read results with Entra ID. Empty: no operator role.')
param principalId string = ''

@description('Kind of principalId.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param principalType string = 'User'

@description('Container names in the data account.')
param inputContainer string = 'images'
param outputContainer string = 'results'
param modelsContainer string = 'models'

@secure()
@description('Optional: the connection string of a data account this template does not create (another subscription or tenant). When set, it is stored as a Key Vault secret in this deployment and the app reads its data through it (DATA_STORAGE_SECRET_URI) instead of the provisioned data account with its identity. The provisioned accounts keep shared keys off either way.')
param externalDataConnectionString string = ''

var useExternalData = !empty(externalDataConnectionString)

@description('Continuous jobs: subscribe the app\'s blobArrivals function to BlobCreated events of the input container. Event Grid checks that the function exists, so set it after the first deployment of the code (azd env set LAKEINFER_CONTINUOUS_EVENTS true; azd provision).')
param continuousEvents bool = false

@description('Blob Inventory: a daily Parquet inventory of the input container written to the inventory container, so that jobs over millions of blobs read it (input.inventory) instead of listing. Costs per million objects scanned (Blob Storage pricing), plus the files it writes.')
param blobInventory bool = false

@description('Durable task hub name.')
param taskHubName string = 'lakeinfer'

@description('Inference knobs (see README, Settings). 0: one single-threaded session per core of the instance.')
param inferWorkers int = 0
param ortIntraOpThreads int = 0
param inferBatchSize int = 1
param ioConcurrency int = 8
param maxImageBytes int = 67108864
param maxImagePixels int = 100000000
param modelCacheMaxBytes int = 2147483648

@description('A partition stops taking new images after this many seconds and the orchestrator continues it (keep well inside functionTimeout, 30 minutes).')
param partitionTimeBudgetSeconds int = 1200

@description('Blobs one planning step lists (PLAN_CHUNK_ITEMS): the partitions it planned start while the next step lists on.')
param planChunkItems int = 100000

@description('Price of one GB-second in USD, for the cost estimate in manifests and reports.')
param pricePerGbSecond string = '0.000026'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-lakeinfer-${token}'
  location: location
  tags: tags
}

// ---- host storage: AzureWebJobsStorage (Durable task hub) and the deployment package ----
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'sthost${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: 'app-package'
}

// ---- data account: ADLS Gen2 (hierarchical namespace), read through its Blob endpoint ----
resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stdata${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    isHnsEnabled: true
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource input 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: inputContainer
}

resource output 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: outputContainer
}

resource models 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: modelsContainer
}

// ---- Blob Inventory (optional): the input container listed daily by Azure, read by jobs through input.inventory ----
resource inventory 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (blobInventory) {
  parent: dataBlobs
  name: 'inventory'
}

resource inventoryPolicy 'Microsoft.Storage/storageAccounts/inventoryPolicies@2023-05-01' = if (blobInventory) {
  parent: dataStorage
  name: 'default'
  properties: {
    policy: {
      enabled: true
      type: 'Inventory'
      rules: [
        {
          enabled: true
          name: '${inputContainer}-daily'
          destination: 'inventory'
          definition: {
            format: 'Parquet'
            schedule: 'Daily'
            objectType: 'Blob'
            // Name is the container and the blob name; what a plan needs of each blob besides.
            schemaFields: ['Name', 'Last-Modified', 'Content-Length', 'Content-MD5', 'Etag', 'BlobType']
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${inputContainer}/']
            }
          }
        }
      ]
    }
  }
  dependsOn: [inventory]
}

// ---- Key Vault (RBAC): exists only when an external data account's connection string is given ----
// No purge protection: a purge-protected vault cannot be purged, so after `azd down` its name (fixed per
// environment) stays taken for the soft-delete retention and `azd up` with the same environment fails.
// Without it, `azd down --purge` purges the soft-deleted vault and the name is free again at once.
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (useExternalData) {
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

// Written in the same pass as everything else: its value is a parameter, not an output of this deployment.
resource dataSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (useExternalData) {
  parent: vault
  name: 'data-storage-connection'
  properties: { value: externalDataConnectionString, contentType: 'Azure Storage connection string' }
}

// ---- monitoring ----
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: { sku: { name: 'PerGB2018' }, retentionInDays: 30 }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id, DisableLocalAuth: true }
}

// ---- the Function App on Flex Consumption ----
// Every name here is declared in lib/util/config.ts (SETTINGS); test/deploy.test.ts checks both ways.
var baseSettings = [
  { name: 'AzureWebJobsStorage__accountName', value: hostStorage.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'TASK_HUB_NAME', value: taskHubName }
  { name: 'MODELS_CONTAINER', value: modelsContainer }
  { name: 'INPUT_CONTAINERS', value: useExternalData ? '' : inputContainer }
  { name: 'OUTPUT_CONTAINERS', value: useExternalData ? '' : outputContainer }
  { name: 'INFER_WORKERS', value: string(inferWorkers) }
  { name: 'ORT_INTRA_OP_THREADS', value: string(ortIntraOpThreads) }
  { name: 'INFER_BATCH_SIZE', value: string(inferBatchSize) }
  { name: 'IO_CONCURRENCY', value: string(ioConcurrency) }
  { name: 'MAX_IMAGE_BYTES', value: string(maxImageBytes) }
  { name: 'MAX_IMAGE_PIXELS', value: string(maxImagePixels) }
  { name: 'MODEL_CACHE_MAX_BYTES', value: string(modelCacheMaxBytes) }
  { name: 'PARTITION_TIME_BUDGET_SECONDS', value: string(partitionTimeBudgetSeconds) }
  { name: 'PLAN_CHUNK_ITEMS', value: string(planChunkItems) }
  { name: 'INSTANCE_MEMORY_MB', value: string(instanceMemoryMB) }
  { name: 'PRICE_PER_GB_SECOND', value: pricePerGbSecond }
]
var dataSettings = useExternalData
  ? [
      { name: 'DATA_STORAGE_SECRET_URI', value: '${vault!.properties.vaultUri}secrets/data-storage-connection' }
    ]
  : [
      { name: 'DATA_STORAGE__serviceUri', value: dataStorage.properties.primaryEndpoints.blob }
      { name: 'DATA_STORAGE__clientId', value: identity.properties.clientId }
    ]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-lakeinfer-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identity.id }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Durable Functions on Flex: one instance of the durable group always up, so orchestrations
        // and activities are picked up without waiting for the scale controller.
        alwaysReady: [{ name: 'durable', instanceCount: 1 }]
      }
      runtime: { name: 'node', version: '22' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(baseSettings, dataSettings)
    }
  }
}

// ---- continuous jobs: BlobCreated events of the input container go to the blobArrivals function ----
resource dataEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-data-${token}'
  location: location
  tags: tags
  properties: { source: dataStorage.id, topicType: 'Microsoft.Storage.StorageAccounts' }
}

resource blobArrivals 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (continuousEvents) {
  parent: dataEvents
  name: 'blob-arrivals'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: { resourceId: '${app.id}/functions/blobArrivals', maxEventsPerBatch: 1, preferredBatchSizeInKilobytes: 64 }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${inputContainer}/blobs/'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}

// Deployments authenticate with Entra ID (azd, az CLI); no FTP or SCM basic-auth credentials.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

// ---- least-privilege roles for the app's identity ----
// Host storage: blobs (leases, deployment package), queues and tables for the Durable task hub.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, identity.id, roles.storageBlobDataOwner)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource hostQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, identity.id, roles.storageQueueDataContributor)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource hostTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, identity.id, roles.storageTableDataContributor)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

// Data: read the input and the models, write the output; nothing account-wide.
resource inputReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: input
  name: guid(input.id, identity.id, roles.storageBlobDataReader)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource inventoryReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (blobInventory) {
  scope: inventory
  name: guid(resourceGroup().id, 'inventory', identity.id, roles.storageBlobDataReader)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource modelsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: models
  name: guid(models.id, identity.id, roles.storageBlobDataReader)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource outputContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: output
  name: guid(output.id, identity.id, roles.storageBlobDataContributor)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

// Key Vault Secrets User on the one secret, not the vault.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useExternalData) {
  scope: dataSecret
  name: guid(dataSecret.id, identity.id, roles.keyVaultSecretsUser)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: insights
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher), principalId: identity.properties.principalId, principalType: 'ServicePrincipal' }
}

// ---- the operator (azd: the signed-in user): data in and out with Entra ID, through the lakeinfer CLI ----
resource operatorData 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  scope: dataStorage
  name: guid(dataStorage.id, principalId, roles.storageBlobDataContributor)
  properties: { roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor), principalId: principalId, principalType: principalType }
}

output AZURE_FUNCTION_APP_NAME string = app.name
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output LAKEINFER_URL string = 'https://${app.properties.defaultHostName}'
output DATA_STORAGE_ACCOUNT string = dataStorage.name
output LAKEINFER_ACCOUNT_URL string = dataStorage.properties.primaryEndpoints.blob
output KEY_VAULT_NAME string = useExternalData ? vault!.name : ''
