{{- define "relgraph.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "relgraph.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "relgraph.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "relgraph.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "relgraph.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "relgraph.claimName" -}}
{{- default (printf "%s-state" (include "relgraph.fullname" .)) .Values.storage.existingClaim -}}
{{- end -}}

{{- define "relgraph.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Environment every relgraph container gets: the config file and the secrets it references. */}}
{{- define "relgraph.env" -}}
- name: RELGRAPH_CONFIG
  value: /etc/relgraph/relgraph.toml
# The warm-path search is compiled by numba at start; the root filesystem is read-only, /tmp is not.
- name: NUMBA_CACHE_DIR
  value: /tmp/numba-cache
- name: NEO4J_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.neo4j.passwordSecret.name }}, key: {{ .Values.neo4j.passwordSecret.key }}}
- name: RELGRAPH_NETWORK_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.networkKey.name }}, key: {{ .Values.secrets.networkKey.key }}}
- name: RELGRAPH_API_KEY_PEPPER
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.apiKeyPepper.name }}, key: {{ .Values.secrets.apiKeyPepper.key }}}
{{- with .Values.training.mlflowTrackingUri }}
- name: MLFLOW_TRACKING_URI
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "relgraph.volumeMounts" -}}
- {name: config, mountPath: /etc/relgraph, readOnly: true}
- {name: state, mountPath: {{ .Values.storage.mountPath }}}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{- define "relgraph.volumes" -}}
- name: config
  configMap: {name: {{ include "relgraph.fullname" . }}}
- name: state
  persistentVolumeClaim: {claimName: {{ include "relgraph.claimName" . }}}
- name: tmp
  emptyDir: {}
{{- end -}}

{{/* The spec of the RayJob that trains: run on install (rayjob.yaml) and on schedule (cronjob.yaml). */}}
{{- define "relgraph.rayJobSpec" -}}
entrypoint: {{ .Values.training.entrypoint | quote }}
shutdownAfterJobFinishes: true
ttlSecondsAfterFinished: {{ .Values.training.ttlSecondsAfterFinished }}
activeDeadlineSeconds: {{ .Values.training.activeDeadlineSeconds }}
submissionMode: K8sJobMode
rayClusterSpec:
  rayVersion: {{ .Values.training.rayVersion | quote }}
  headGroupSpec:
    rayStartParams:
      dashboard-host: "0.0.0.0"
    template:
      metadata:
        labels:
          {{- include "relgraph.selector" . | nindent 10 }}
          app.kubernetes.io/component: training
      spec:
        serviceAccountName: {{ include "relgraph.serviceAccountName" . }}
        securityContext:
          {{- toYaml .Values.podSecurityContext | nindent 10 }}
        containers:
          - name: ray-head
            image: {{ include "relgraph.image" . }}
            imagePullPolicy: {{ .Values.image.pullPolicy }}
            env:
              {{- include "relgraph.env" . | nindent 14 }}
            ports:
              - {name: gcs, containerPort: 6379}
              - {name: dashboard, containerPort: 8265}
              - {name: client, containerPort: 10001}
            resources:
              {{- toYaml .Values.training.head.resources | nindent 14 }}
            volumeMounts:
              {{- include "relgraph.volumeMounts" . | nindent 14 }}
        volumes:
          {{- include "relgraph.volumes" . | nindent 10 }}
  workerGroupSpecs:
    - groupName: workers
      replicas: {{ .Values.training.workers.replicas }}
      minReplicas: {{ .Values.training.workers.replicas }}
      maxReplicas: {{ .Values.training.workers.replicas }}
      rayStartParams: {}
      template:
        metadata:
          labels:
            {{- include "relgraph.selector" . | nindent 12 }}
            app.kubernetes.io/component: training
        spec:
          serviceAccountName: {{ include "relgraph.serviceAccountName" . }}
          securityContext:
            {{- toYaml .Values.podSecurityContext | nindent 12 }}
          containers:
            - name: ray-worker
              image: {{ include "relgraph.image" . }}
              imagePullPolicy: {{ .Values.image.pullPolicy }}
              env:
                {{- include "relgraph.env" . | nindent 16 }}
              resources:
                {{- toYaml .Values.training.workers.resources | nindent 16 }}
              volumeMounts:
                {{- include "relgraph.volumeMounts" . | nindent 16 }}
          volumes:
            {{- include "relgraph.volumes" . | nindent 12 }}
{{- end -}}
