{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "mindmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-<chart>, or <release> when it already holds the chart name. */}}
{{- define "mindmirror.fullname" -}}
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

{{- define "mindmirror.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them on upgrade (selectors are immutable). */}}
{{- define "mindmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mindmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mindmirror.labels" -}}
helm.sh/chart: {{ include "mindmirror.chart" . }}
{{ include "mindmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: mindmirror
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mindmirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mindmirror.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a pinned tag (never latest), optionally with a digest. */}}
{{- define "mindmirror.image" -}}
{{- $variant := ternary "gpu" "cpu" .Values.gpu.enabled }}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion $variant) }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must name a release, not \"latest\"" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* preStop sleep + drain + margin, unless set; a grace period that cuts the drain short fails. */}}
{{- define "mindmirror.terminationGracePeriodSeconds" -}}
{{- $lc := .Values.lifecycle }}
{{- $needed := add $lc.preStopSleepSeconds $lc.drainTimeoutSeconds }}
{{- if kindIs "invalid" $lc.terminationGracePeriodSeconds }}
{{- add $needed 15 }}
{{- else if le (int $lc.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%v) must be larger than preStopSleepSeconds + drainTimeoutSeconds (%v), or the drain is killed" $lc.terminationGracePeriodSeconds $needed) }}
{{- else }}
{{- int64 $lc.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Where the API key Secret is mounted. */}}
{{- define "mindmirror.apiKeysDir" -}}
/var/run/secrets/mindmirror
{{- end }}

{{/* Writable cache directory (XDG_CACHE_HOME); the root filesystem is read-only. */}}
{{- define "mindmirror.cacheDir" -}}
/home/mindmirror/.cache
{{- end }}
