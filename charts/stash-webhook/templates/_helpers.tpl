{{/* The label every object of manifests/ has, and the only one in selectors. */}}
{{- define "stash-webhook.selectorLabels" -}}
app.kubernetes.io/name: stash-webhook
{{- end }}

{{/* Labels of every object: the selector label and Helm's own. */}}
{{- define "stash-webhook.labels" -}}
{{ include "stash-webhook.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The certificate source, checked. */}}
{{- define "stash-webhook.certificateSource" -}}
{{- $source := .Values.certificate.source -}}
{{- if not (has $source (list "cert-manager" "self-signed")) -}}
{{- fail (printf "certificate.source must be cert-manager or self-signed, not %q" $source) -}}
{{- end -}}
{{- $source -}}
{{- end }}

{{/* A webhook's clientConfig. Usage: include "stash-webhook.clientConfig" (list . "/validate") */}}
{{- define "stash-webhook.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- if eq (include "stash-webhook.certificateSource" $root) "self-signed" }}
caBundle: {{ required "certificate.selfSigned.caCrt: --set-file certificate.selfSigned.caCrt=DIR/ca.crt (see values.yaml)" $root.Values.certificate.selfSigned.caCrt | b64enc }}
{{- end }}
{{- if $root.Values.url }}
{{- if not (hasPrefix "https://" $root.Values.url) }}
{{- fail (printf "url must start with https:// (the API server calls webhooks over HTTPS only), not %q" $root.Values.url) }}
{{- end }}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.url) $path | quote }}
{{- else }}
service:
  name: stash-webhook
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path }}
  port: 443
{{- end }}
{{- end }}
