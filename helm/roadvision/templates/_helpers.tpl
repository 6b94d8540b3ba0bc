{{/*
Chart name, truncated to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "roadvision.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name
already contains it. Truncated to 63 characters.
*/}}
{{- define "roadvision.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "roadvision.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels on every resource.
*/}}
{{- define "roadvision.labels" -}}
helm.sh/chart: {{ include "roadvision.chart" . }}
{{ include "roadvision.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roadvision
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by every component of one release.
*/}}
{{- define "roadvision.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roadvision.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the predictor pods (KServe copies the predictor's `labels` onto its pods).
*/}}
{{- define "roadvision.predictorSelectorLabels" -}}
{{ include "roadvision.selectorLabels" . }}
app.kubernetes.io/component: predictor
{{- end }}

{{/*
Selector labels of the Redis pods.
*/}}
{{- define "roadvision.redisSelectorLabels" -}}
{{ include "roadvision.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
Name of the predictor's ServiceAccount.
*/}}
{{- define "roadvision.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-predictor" (include "roadvision.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Redis Deployment and Service.
*/}}
{{- define "roadvision.redisName" -}}
{{- printf "%s-redis" (include "roadvision.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Redis URL handed to the predictor: the in-cluster Service, the external URL, or empty
(uncached serving).
*/}}
{{- define "roadvision.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "roadvision.redisName" .) }}
{{- else }}
{{- .Values.redis.externalUrl }}
{{- end }}
{{- end }}

{{/*
The serving image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "roadvision.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The S3 settings KServe's storage initializer reads (serving.kserve.io/s3-*), as annotations of
the S3 Secret (or of the ServiceAccount when there is no Secret, as with IRSA).
*/}}
{{- define "roadvision.s3Annotations" -}}
{{- if .Values.s3.endpoint }}
serving.kserve.io/s3-endpoint: {{ .Values.s3.endpoint | quote }}
{{- end }}
serving.kserve.io/s3-usehttps: {{ ternary "1" "0" .Values.s3.useHttps | quote }}
serving.kserve.io/s3-region: {{ .Values.s3.region | quote }}
{{- end }}

{{/*
Fails the render with a readable message when values are inconsistent. values.schema.json
checks each value alone; this checks the combinations a schema cannot express. Included from
the InferenceService template, so every render runs it.
*/}}
{{- define "roadvision.validateConfig" -}}
{{- $p := .Values.predictor }}
{{- if gt (int $p.minReplicas) (int $p.maxReplicas) }}
{{- fail (printf "predictor.minReplicas (%d) must not exceed predictor.maxReplicas (%d)" (int $p.minReplicas) (int $p.maxReplicas)) }}
{{- end }}
{{- if and (eq $p.deploymentMode "Standard") (has $p.scaleMetric (list "concurrency" "rps")) }}
{{- fail (printf "predictor.scaleMetric %q needs Knative's autoscaler: use cpu or memory with predictor.deploymentMode Standard" $p.scaleMetric) }}
{{- end }}
{{- if and (eq $p.deploymentMode "Standard") (eq (int $p.minReplicas) 0) }}
{{- fail "predictor.minReplicas 0 (scale to zero) needs predictor.deploymentMode Knative" }}
{{- end }}
{{- if and (has $p.scaleMetric (list "cpu" "memory")) (gt (int $p.scaleTarget) 100) }}
{{- fail (printf "predictor.scaleTarget %d is a utilisation percentage for scaleMetric %s: use 1-100" (int $p.scaleTarget) $p.scaleMetric) }}
{{- end }}
{{- if and (not .Values.model.storageUri) (not .Values.model.uri) }}
{{- fail "set model.uri (models:/NAME@ALIAS) or model.storageUri (s3://...)" }}
{{- end }}
{{- if and (not .Values.model.storageUri) (hasPrefix "models:/" .Values.model.uri) (not .Values.mlflow.trackingUri) }}
{{- fail "model.uri is an MLflow registry URI: set mlflow.trackingUri" }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.externalUrl }}
{{- fail "redis.externalUrl is set while redis.enabled is true: pick one (set redis.enabled=false to use the external Redis)" }}
{{- end }}
{{- if and $p.gpu.enabled (lt (int $p.gpu.count) 1) }}
{{- fail "predictor.gpu.count must be at least 1 when predictor.gpu.enabled is true" }}
{{- end }}
{{- if and .Values.s3.createSecret (not .Values.s3.secretName) }}
{{- fail "s3.createSecret needs s3.secretName (the name of the Secret to create)" }}
{{- end }}
{{- if and .Values.s3.createSecret (or (not .Values.s3.accessKeyId) (not .Values.s3.secretAccessKey)) }}
{{- fail "s3.createSecret needs s3.accessKeyId and s3.secretAccessKey (pass them with --set, never in a values file)" }}
{{- end }}
{{- if and (not .Values.s3.createSecret) (or .Values.s3.accessKeyId .Values.s3.secretAccessKey) }}
{{- fail "s3.accessKeyId/s3.secretAccessKey are set but s3.createSecret is false: set s3.createSecret=true, or drop the keys and use the existing Secret s3.secretName" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" }}
{{- end }}
{{- end }}
