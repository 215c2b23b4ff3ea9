{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "mlp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-mlplatform, or the release name when it already contains the chart name. */}}
{{- define "mlp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the namespace: two releases of one name never collide. */}}
{{- define "mlp.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "mlp.fullname" .) | trunc 200 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlp.labels" -}}
{{ include "mlp.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Component selector labels: (dict "root" $ "component" "hub") */}}
{{- define "mlp.componentSelector" -}}
{{ include "mlp.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlp.componentLabels" -}}
{{ include "mlp.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlp.image" -}}
{{- printf "%s:%s" .name (toString .tag) -}}
{{- end -}}

{{- define "mlp.hub" -}}{{ include "mlp.fullname" . }}-hub{{- end -}}
{{- define "mlp.proxy" -}}{{ include "mlp.fullname" . }}-proxy{{- end -}}
{{- define "mlp.proxyApi" -}}{{ include "mlp.fullname" . }}-proxy-api{{- end -}}
{{- define "mlp.proxyPublic" -}}{{ include "mlp.fullname" . }}-proxy-public{{- end -}}
{{- define "mlp.platform" -}}{{ include "mlp.fullname" . }}-api{{- end -}}
{{- define "mlp.postgresql" -}}{{ include "mlp.fullname" . }}-postgresql{{- end -}}
{{- define "mlp.secret" -}}{{ include "mlp.fullname" . }}-secrets{{- end -}}
{{- define "mlp.platformConfigMap" -}}{{ include "mlp.fullname" . }}-platform-config{{- end -}}
{{- define "mlp.usersPriority" -}}{{ include "mlp.clusterName" . }}-users{{- end -}}
{{- define "mlp.placeholderPriority" -}}{{ include "mlp.clusterName" . }}-placeholders{{- end -}}

{{/* The namespace of runs and deployments. */}}
{{- define "mlp.workNamespace" -}}
{{- $fromConfig := dig "kubernetes" "namespace" "" .Values.platformConfig -}}
{{- .Values.platform.namespace | default $fromConfig | default .Release.Namespace -}}
{{- end -}}

{{/* The shared RWX claim. */}}
{{- define "mlp.sharedClaim" -}}
{{- default (printf "%s-shared" (include "mlp.fullname" .)) .Values.storage.existingClaim -}}
{{- end -}}

{{/* The Secret and keys holding the database URLs. */}}
{{- define "mlp.dbSecret" -}}
{{- if .Values.postgresql.enabled -}}{{ include "mlp.secret" . }}{{- else -}}
{{- required "postgresql.external.secretName: name the Secret holding the database URLs (or set postgresql.enabled: true)" .Values.postgresql.external.secretName -}}
{{- end -}}
{{- end -}}
{{- define "mlp.dbPlatformKey" -}}
{{- if .Values.postgresql.enabled -}}platform-db-url{{- else -}}{{ .Values.postgresql.external.platformUrlKey }}{{- end -}}
{{- end -}}
{{- define "mlp.dbHubKey" -}}
{{- if .Values.postgresql.enabled -}}hub-db-url{{- else -}}{{ .Values.postgresql.external.hubUrlKey }}{{- end -}}
{{- end -}}

{{/* The images to pre-pull: every environment's plus prePuller.extraImages, each once. */}}
{{- define "mlp.prePullImages" -}}
{{- $images := list -}}
{{- range .Values.platformConfig.environments -}}{{- $images = append $images .image -}}{{- end -}}
{{- range .Values.prePuller.extraImages -}}{{- $images = append $images . -}}{{- end -}}
{{- toJson (uniq $images) -}}
{{- end -}}

{{/* Pod-level security defaults of the chart's own services. */}}
{{- define "mlp.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mlp.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "mlp.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fails when the platform config breaks a rule the schema cannot express. */}}
{{- define "mlp.checkPlatformConfig" -}}
{{- $sizes := dict -}}
{{- range $i, $h := .Values.platformConfig.hardware -}}
{{- if hasKey $sizes $h.name -}}{{- fail (printf "platformConfig.hardware[%d].name: duplicate name %q" $i $h.name) -}}{{- end -}}
{{- $_ := set $sizes $h.name $h -}}
{{- end -}}
{{- $envs := dict -}}
{{- range $i, $e := .Values.platformConfig.environments -}}
{{- if hasKey $envs $e.name -}}{{- fail (printf "platformConfig.environments[%d].name: duplicate name %q" $i $e.name) -}}{{- end -}}
{{- $_ := set $envs $e.name $e -}}
{{- end -}}
{{- if dig "kubernetes" "namespace_per_user" false .Values.platformConfig -}}
{{- fail "platformConfig.kubernetes.namespace_per_user: not supported by this chart (its Role covers one namespace, platform.namespace); grant the platform's service account the Role of deploy/rbac/platform-role.yaml in each user's namespace and run mlp server yourself" -}}
{{- end -}}
{{- range $name, $_ := .Values.scheduling.userPlaceholders.sizes -}}
{{- if not (hasKey $sizes $name) -}}
{{- fail (printf "scheduling.userPlaceholders.sizes.%s: no hardware size %q in platformConfig.hardware (known: %s)" $name $name (keys $sizes | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Egress of notebook and run pods besides the hub and the platform API (networkPolicy values). */}}
{{- define "mlp.userEgress" -}}
# DNS
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- if .allowInternet }}
# Public addresses only.
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          {{- toYaml .privateCIDRs | nindent 10 }}
{{- end }}
{{- with .extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}
