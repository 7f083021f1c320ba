{{/* The chart's name, or nameOverride. */}}
{{- define "harrow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-harrow, or fullnameOverride; at most 52 characters so suffixes fit. */}}
{{- define "harrow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "harrow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; pass (dict "ctx" $ "component" "worker"). */}}
{{- define "harrow.labels" -}}
helm.sh/chart: {{ include "harrow.chart" .ctx }}
{{ include "harrow.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: harrow
{{- end }}

{{- define "harrow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "harrow.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "harrow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "harrow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "harrow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "harrow.authSecret" -}}
{{- default (printf "%s-auth" (include "harrow.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* The URL workers use to reach the coordinator's Service. */}}
{{- define "harrow.coordinatorUrl" -}}
{{- printf "%s://%s-coordinator:%d" (ternary "https" "http" .Values.tls.enabled) (include "harrow.fullname" .) (int .Values.coordinator.grpcPort) }}
{{- end }}

{{/* Object store settings from Secrets: secretKeyRef, never values. */}}
{{- define "harrow.storageSecretEnv" -}}
{{- range .Values.storage.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}

{{/* The TLS Secret as files, and where the processes find them. */}}
{{- define "harrow.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.existingSecret is required when tls.enabled" .Values.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "harrow.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /var/run/harrow/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "harrow.tlsEnv" -}}
{{- if .Values.tls.enabled }}
HARROW_TLS_CERT: /var/run/harrow/tls/tls.crt
HARROW_TLS_KEY: /var/run/harrow/tls/tls.key
HARROW_TLS_CA: /var/run/harrow/tls/ca.crt
{{- end }}
{{- end }}

{{/* Environment both kinds of process read. */}}
{{- define "harrow.commonEnv" -}}
HARROW_LOG: {{ .Values.log | quote }}
{{- range $name, $value := .Values.storage.env }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}
