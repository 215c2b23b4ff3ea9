{{- /*
A DaemonSet whose pods pull every image (prePuller images, each an init container running a no-op)
on every node, GPU nodes included, then sleep in a pause container. (dict "root" $ "hook" bool)
*/}}
{{- define "mlp.imagePuller" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s-image-puller" (include "mlp.fullname" $root) (ternary "hook" "continuous" .hook) -}}
{{- $sel := dict "root" $root "component" (ternary "hook-image-puller" "continuous-image-puller" .hook) -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "mlp.componentLabels" $sel | nindent 4 }}
  {{- if .hook }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    helm.sh/hook-weight: "-10"
  {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "mlp.componentSelector" $sel | nindent 6 }}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 100%
  template:
    metadata:
      labels:
        {{- include "mlp.componentLabels" $sel | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 0
      {{- include "mlp.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- include "mlp.podSecurity" $root | nindent 8 }}
      # Every node, the tainted GPU nodes too.
      tolerations:
        - operator: Exists
      initContainers:
        {{- range $i, $image := include "mlp.prePullImages" $root | fromJsonArray }}
        - name: pull-{{ $i }}
          image: {{ $image }}
          imagePullPolicy: IfNotPresent
          command:
            {{- toYaml $root.Values.prePuller.command | nindent 12 }}
          securityContext:
            {{- include "mlp.containerSecurity" $root | nindent 12 }}
          resources:
            requests: {cpu: "0", memory: "0"}
        {{- end }}
      containers:
        - name: pause
          image: {{ include "mlp.image" $root.Values.prePuller.pause }}
          imagePullPolicy: IfNotPresent
          securityContext:
            {{- include "mlp.containerSecurity" $root | nindent 12 }}
          resources:
            requests: {cpu: "0", memory: "0"}
{{- end -}}
