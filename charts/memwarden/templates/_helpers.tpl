{{/* The chart name, or nameOverride. */}}
{{- define "memwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* release-chart, or fullnameOverride; the release name alone when it already contains the chart name. */}}
{{- define "memwarden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "memwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "memwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "memwarden.labels" -}}
helm.sh/chart: {{ include "memwarden.chart" . }}
{{ include "memwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: memwarden
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "memwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "memwarden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "memwarden.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the policy: the chart's own or an existing one. */}}
{{- define "memwarden.policyConfigMap" -}}
{{- if .Values.existingPolicyConfigMap.name -}}
{{- .Values.existingPolicyConfigMap.name -}}
{{- else -}}
{{- printf "%s-policy" (include "memwarden.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Refuses an inline policy that asks for more than `features` grants: the agent
would otherwise fail at its first Event, annotation or memory.high write.
(An existing ConfigMap cannot be read at render time: features must match it.)
*/}}
{{- define "memwarden.checkPolicy" -}}
{{- if and (eq .Values.agent.kubernetes "off") (or .Values.features.events .Values.features.annotations) -}}
{{- fail "features.events and features.annotations need the Kubernetes API: agent.kubernetes is off" -}}
{{- end -}}
{{- if not .Values.existingPolicyConfigMap.name -}}
{{- $outputs := default dict .Values.policy.outputs -}}
{{- $kube := default dict $outputs.kubernetes -}}
{{- if and $kube.events (not .Values.features.events) -}}
{{- fail "policy.outputs.kubernetes.events is true but features.events is false: set features.events=true (it grants events create/patch)" -}}
{{- end -}}
{{- if and $kube.annotations (not .Values.features.annotations) -}}
{{- fail "policy.outputs.kubernetes.annotations is true but features.annotations is false: set features.annotations=true (it grants pods patch)" -}}
{{- end -}}
{{- if and (regexMatch "(?m)\\bmode:\\s*[\"']?throttle\\b" (toYaml .Values.policy)) (not .Values.features.throttle) -}}
{{- fail "the policy uses mode: throttle but features.throttle is false: set features.throttle=true (it mounts features.throttleSubtree of the host cgroupfs read-write)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
