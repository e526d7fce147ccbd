{{/*
Names are fixed: the runbook addresses deployment/spire-server and
daemonset/spire-agent (label app=spire-agent) in the release namespace.
*/}}

{{- define "spire.labels" -}}
app.kubernetes.io/part-of: hive-identity
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "spire.serverImage" -}}
{{ .Values.server.image.repository }}:{{ .Values.server.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "spire.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The node alias: every agent of this cluster. */}}
{{- define "spire.nodeAliasID" -}}
spiffe://{{ .Values.trustDomain }}/ns/{{ .Release.Namespace }}/sa/spire-agent
{{- end -}}

{{- define "spire.serverAddress" -}}
spire-server.{{ .Release.Namespace }}.svc
{{- end -}}

{{- define "spire.checkValues" -}}
{{- if and (gt (int .Values.server.replicas) 1) (ne .Values.datastore.type "postgres") -}}
{{- fail "server.replicas > 1 needs datastore.type=postgres: SQLite is one server's file" -}}
{{- end -}}
{{- if and (eq .Values.datastore.type "postgres") (not .Values.datastore.postgres.existingSecret) -}}
{{- fail "datastore.type=postgres needs datastore.postgres.existingSecret (a Secret holding the connection string)" -}}
{{- end -}}
{{- if and .Values.server.upstreamCA.existingSecret (not .Values.server.upstreamCA.caCertificate) -}}
{{- fail "server.upstreamCA.existingSecret needs server.upstreamCA.caCertificate (the PEM the agents trust)" -}}
{{- end -}}
{{- end -}}

{{/* Shell-quote one argument. */}}
{{- define "spire.sq" -}}
'{{ . | replace "'" "'\\''" }}'
{{- end -}}
