"""Generates sluice-dashboard.json (Grafana) from the panel list below: python3 docs/grafana/generate.py"""
import json
panels=[]; y=[0]; x=[0]
G='consumergroup=~"$group"'; T='topic=~"$topic"'; GT=G+','+T
def sel(extra=""):
    return '{instance=~"$instance"' + (","+extra if extra else "") + "}"
I=sel()
DS={"type":"prometheus","uid":"${datasource}"}
def newrow(title):
    if x[0]>0: y[0]+=8
    x[0]=0
    panels.append({"type":"row","title":title,"collapsed":False,"gridPos":{"h":1,"w":24,"x":0,"y":y[0]},"id":len(panels)+1,"panels":[]})
    y[0]+=1
def panel(title, targets, unit="short", w=12, kind="timeseries", desc=""):
    if x[0]+w>24:
        x[0]=0; y[0]+=8
    p={"type":kind,"title":title,"description":desc,"datasource":DS,
       "gridPos":{"h":8,"w":w,"x":x[0],"y":y[0]},"id":len(panels)+1,
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "options":({"legend":{"displayMode":"table","placement":"right","calcs":["lastNotNull","max"]}} if kind=="timeseries" else {}),
       "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l,"datasource":DS} for i,(e,l) in enumerate(targets)]}
    panels.append(p); x[0]+=w
newrow("Consumer lag (kafka_exporter names)")
panel("Lag by group and topic",[('sum by (consumergroup, topic) (kafka_consumergroup_lag_sum'+sel(G)+')',"{{consumergroup}} / {{topic}}")],desc="High watermark minus committed offset, summed over a topic's partitions.")
panel("Lag by partition",[('kafka_consumergroup_lag'+sel(GT),"{{consumergroup}} {{topic}}/{{partition}}")])
panel("Consumption rate (committed offsets/s)",[('sum by (consumergroup, topic) (rate(kafka_consumergroup_current_offset'+sel(G)+'[1m]))',"{{consumergroup}} / {{topic}}")])
panel("Group members",[('kafka_consumergroup_members'+sel(G),"{{consumergroup}}")])
newrow("Topics and partitions")
panel("Produce rate (offsets/s)",[('sum by (topic) (rate(kafka_topic_partition_current_offset'+sel(T)+'[1m]))',"{{topic}}")])
panel("Partitions per topic",[('kafka_topic_partitions'+sel(T),"{{topic}}")])
panel("Bytes in / out",[('sum by (topic) (rate(sluice_topic_bytes_in_total'+sel(T)+'[1m]))',"in {{topic}}"),('sum by (topic) (rate(sluice_topic_bytes_out_total'+sel(T)+'[1m]))',"out {{topic}}")],unit="Bps")
panel("Records in / out",[('sum by (topic) (rate(sluice_topic_records_in_total'+sel(T)+'[1m]))',"in {{topic}}"),('sum by (topic) (rate(sluice_topic_records_out_total'+sel(T)+'[1m]))',"out {{topic}} (inline responses)")],unit="rps")
panel("Partition size",[('sluice_partition_size_bytes'+sel(T),"{{topic}}/{{partition}}")],unit="bytes")
panel("Segments and oldest offset",[('sluice_partition_segments'+sel(T),"segments {{topic}}/{{partition}}"),('kafka_topic_partition_oldest_offset'+sel(T),"oldest {{topic}}/{{partition}}")])
panel("Offline partitions",[('sum(sluice_partition_offline'+I+')',"offline")],kind="stat",w=6)
panel("Not yet durable (log end offset - high watermark)",[('sluice_partition_log_end_offset'+sel(T)+' - on(instance, topic, partition) kafka_topic_partition_current_offset'+sel(T),"{{topic}}/{{partition}}")],w=18)
newrow("Requests")
panel("Requests/s by API",[('sum by (api) (rate(sluice_requests_total'+I+'[1m]))',"{{api}}")],unit="reqps")
panel("Errors/s by API",[('sum by (api) (rate(sluice_request_errors_total'+I+'[1m]))',"{{api}}")],unit="reqps")
panel("p99 latency by API",[('histogram_quantile(0.99, sum by (api, le) (rate(sluice_request_duration_seconds_bucket'+I+'[1m])))',"{{api}}")],unit="s")
panel("p50 latency by API",[('histogram_quantile(0.5, sum by (api, le) (rate(sluice_request_duration_seconds_bucket'+I+'[1m])))',"{{api}}")],unit="s")
newrow("Storage and shards")
panel("fsync (group commit) latency",[('histogram_quantile(0.5, sum by (le) (rate(sluice_fsync_duration_seconds_bucket'+I+'[1m])))',"p50"),('histogram_quantile(0.99, sum by (le) (rate(sluice_fsync_duration_seconds_bucket'+I+'[1m])))',"p99"),('rate(sluice_fsync_duration_seconds_count'+I+'[1m])',"fsyncs/s")],unit="s")
panel("Shard busy (CPU seconds/s)",[('rate(sluice_shard_busy_seconds_total'+I+'[1m])',"shard {{shard}}")],unit="percentunit")
panel("Executor stalls/s (> 1 ms on CPU without yielding)",[('rate(sluice_shard_stalls_total'+I+'[5m])',"shard {{shard}}")])
panel("Tick lateness p99",[('histogram_quantile(0.99, sum by (shard, le) (rate(sluice_shard_tick_lateness_seconds_bucket'+I+'[1m])))',"shard {{shard}}")],unit="s")
panel("Back-pressure events/s",[('rate(sluice_cross_shard_inbox_full_total'+I+'[1m])',"inbox full, shard {{shard}}"),('rate(sluice_request_memory_waits_total'+I+'[1m])',"memory budget wait, shard {{shard}}")])
panel("Memory",[('sluice_memory_rss_bytes'+I,"RSS"),('sluice_request_memory_used_bytes'+I,"requests in use, shard {{shard}}"),('sluice_request_memory_budget_bytes'+I,"request budget, shard {{shard}}")],unit="bytes")
newrow("Replication (cluster mode)")
panel("Under-replicated partitions",[('sum by (instance) (kafka_topic_partition_under_replicated_partition'+I+')',"{{instance}}")])
panel("Partitions without a leader",[('count by (instance) (kafka_topic_partition_leader'+I+' == -1)',"{{instance}}")])
panel("Leaders per broker",[('count_values("leader", max by (topic, partition) (kafka_topic_partition_leader'+I+') >= 0)',"broker {{leader}}")])
panel("Raft messages dropped/s (peer queue full)",[('rate(sluice_raft_messages_dropped_total'+I+'[1m])',"shard {{shard}}")])
newrow("Connections and broker")
panel("Connections",[('sluice_connections_open'+I,"open"),('sum(rate(sluice_connections_accepted_total'+I+'[1m]))',"accepted/s"),('rate(sluice_connections_rejected_total'+I+'[1m])',"rejected/s")])
panel("Brokers, shards, ready, uptime",[('kafka_brokers'+I,"brokers"),('sluice_shards'+I,"shards"),('sluice_ready'+I,"ready"),('sluice_uptime_seconds'+I,"uptime s")],kind="stat")
def var(name, query, label):
    return {"name":name,"label":label,"type":"query","datasource":DS,"query":{"query":query,"refId":"v"},"definition":query,
            "includeAll":True,"multi":True,"allValue":".*","current":{"text":"All","value":"$__all"},"refresh":2,"regex":"","sort":1}
dash={"title":"Sluice","uid":"sluice-broker","schemaVersion":39,"version":1,"editable":True,
 "description":"Sluice broker: consumer lag (kafka_exporter-compatible names), topics, requests, storage, shards. Generated by docs/grafana/generate.py; series documented in ARCHITECTURE.md (src/metrics).",
 "tags":["sluice","kafka"],"time":{"from":"now-1h","to":"now"},"refresh":"10s",
 "templating":{"list":[{"name":"datasource","label":"Data source","type":"datasource","query":"prometheus","current":{},"hide":0},
   var("instance","label_values(sluice_uptime_seconds, instance)","Broker"),
   var("topic","label_values(kafka_topic_partitions, topic)","Topic"),
   var("group","label_values(kafka_consumergroup_members, consumergroup)","Group")]},
 "panels":panels}
import os
out=os.path.join(os.path.dirname(os.path.abspath(__file__)),"sluice-dashboard.json")
with open(out,"w") as f:
    json.dump(dash,f,indent=1); f.write("\n")
