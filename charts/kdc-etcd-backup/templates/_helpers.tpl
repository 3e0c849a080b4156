{{/* The prefix of every object name; the kustomize install's names are the defaults. */}}
{{- define "kdc.fullname" -}}kdc-etcd-backup{{- end -}}

{{/* Labels Helm adds to each object, besides the kustomize install's own. */}}
{{- define "kdc.helmLabels" -}}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kdc.labels" -}}
app.kubernetes.io/name: kdc-etcd-backup
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: kdc-etcd-backup
{{ include "kdc.helmLabels" .root }}
{{- end -}}

{{- define "kdc.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{/* The serving Certificate as cert-manager's CA injector names it. */}}
{{- define "kdc.injectCAFrom" -}}{{ .Release.Namespace }}/{{ include "kdc.fullname" . }}-serving-cert{{- end -}}
