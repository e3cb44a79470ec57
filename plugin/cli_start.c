/* The asu commands that start jobs: unlearn, finetune and evaluate. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_dataset.h"
#include "cli.h"

static int load_examples(const char *path, const char *what, Asu__V1__Example ***out,
                         size_t *n, asu_dataset *ds) {
  asu_error err;
  asu_error_clear(&err);
  if (asu_dataset_load(path, ds, &err) != ASU_OK) {
    /* The loader's message starts with the path already. */
    fprintf(stderr, "asu: %s file: %s\n", what, err.message);
    return -1;
  }
  *out = NULL;
  *n = 0;
  if (ds->count == 0 && strcmp(what, "heldout") != 0) {
    fprintf(stderr, "asu: %s file %s has no examples; give at least one JSON object a line\n",
            what, path);
    return -1;
  }
  if (ds->count == 0) return 0;
  Asu__V1__Example *items = calloc(ds->count, sizeof *items);
  Asu__V1__Example **ptrs = calloc(ds->count, sizeof *ptrs);
  if (!items || !ptrs) {
    free(items);
    free(ptrs);
    fprintf(stderr, "asu: out of memory\n");
    return -1;
  }
  for (size_t i = 0; i < ds->count; i++) {
    asu__v1__example__init(&items[i]);
    items[i].question = ds->examples[i].question ? ds->examples[i].question : "";
    items[i].answer = ds->examples[i].answer ? ds->examples[i].answer : "";
    ptrs[i] = &items[i];
  }
  *out = ptrs;
  *n = ds->count;
  return 0;
}

/* The examples of one list were allocated as one block, starting at ptrs[0]. */
static void free_examples(Asu__V1__Example **ptrs) {
  if (!ptrs) return;
  free(ptrs[0]);
  free(ptrs);
}

int cli_unlearn(asu_client *c, int argc, char **argv) {
  Asu__V1__StartUnlearningRequest req = ASU__V1__START_UNLEARNING_REQUEST__INIT;
  const char *forget = NULL, *retain = NULL, *heldout = NULL;
  bool wait = false;
  static const struct option opts[] = {{"name", required_argument, NULL, 'N'},
                                       {"forget", required_argument, NULL, 'f'},
                                       {"retain", required_argument, NULL, 'r'},
                                       {"heldout", required_argument, NULL, 'h'},
                                       {"method", required_argument, NULL, 'm'},
                                       {"temperature-attn", required_argument, NULL, 't'},
                                       {"steps", required_argument, NULL, 's'},
                                       {"lr", required_argument, NULL, 'l'},
                                       {"rank", required_argument, NULL, 'R'},
                                       {"activate", no_argument, NULL, 'a'},
                                       {"continual", no_argument, NULL, 'c'},
                                       {"wait", no_argument, NULL, 'w'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (o) {
    case 'N': req.adapter_name = optarg; break;
    case 'f': forget = optarg; break;
    case 'r': retain = optarg; break;
    case 'h': heldout = optarg; break;
    case 'm': req.method = optarg; break;
    case 't':
      if (!cli_parse_float(optarg, &req.tau)) return cli_usage_error("invalid --temperature-attn value: %s", optarg);
      break;
    case 's':
      if (!cli_parse_u32(optarg, &req.steps) || req.steps == 0)
        return cli_usage_error("invalid --steps value: %s (expected a positive integer)", optarg);
      break;
    case 'l':
      if (!cli_parse_float(optarg, &req.learning_rate)) return cli_usage_error("invalid --lr value: %s", optarg);
      break;
    case 'R':
      if (!cli_parse_u32(optarg, &req.lora_rank) || req.lora_rank == 0)
        return cli_usage_error("invalid --rank value: %s (expected an integer in 1..256)", optarg);
      break;
    case 'a': req.activate_on_success = 1; break;
    case 'c': req.continual = 1; break;
    case 'w': wait = true; break;
    default: return cli_usage_error("%s", "invalid unlearn option");
    }
  }
  if (optind != argc) return cli_usage_error("unexpected argument %s", argv[optind]);
  if (!req.adapter_name[0]) return cli_usage_error("%s", "unlearn needs --name");
  if (!forget || !retain) return cli_usage_error("%s", "unlearn needs --forget and --retain");

  asu_dataset fds = {0}, rds = {0}, hds = {0};
  int rc = EXIT_CALL;
  if (load_examples(forget, "forget", &req.forget, &req.n_forget, &fds) != 0 ||
      load_examples(retain, "retain", &req.retain, &req.n_retain, &rds) != 0 ||
      (heldout && load_examples(heldout, "heldout", &req.heldout, &req.n_heldout, &hds) != 0))
    goto done;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "StartUnlearning", &req.base, &asu__v1__job__descriptor, &resp,
                       &st) != 0) {
    rc = cli_call_error(&st);
    goto done;
  }
  Asu__V1__Job *job = (Asu__V1__Job *)resp;
  printf("%s\n", job->id);
  fflush(stdout);
  rc = wait ? cli_watch(c, job->id) : 0;
  protobuf_c_message_free_unpacked(resp, NULL);
done:
  free_examples(req.forget);
  free_examples(req.retain);
  free_examples(req.heldout);
  asu_dataset_free(&fds);
  asu_dataset_free(&rds);
  asu_dataset_free(&hds);
  return rc;
}

int cli_finetune(asu_client *c, int argc, char **argv) {
  Asu__V1__StartFinetuneRequest req = ASU__V1__START_FINETUNE_REQUEST__INIT;
  const char *data = NULL;
  bool wait = false;
  static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"steps", required_argument, NULL, 's'},
                                       {"lr", required_argument, NULL, 'l'},
                                       {"wait", no_argument, NULL, 'w'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (o) {
    case 'd': data = optarg; break;
    case 'o': req.output_path = optarg; break;
    case 's':
      if (!cli_parse_u32(optarg, &req.steps) || req.steps == 0)
        return cli_usage_error("invalid --steps value: %s (expected a positive integer)", optarg);
      break;
    case 'l':
      if (!cli_parse_float(optarg, &req.learning_rate)) return cli_usage_error("invalid --lr value: %s", optarg);
      break;
    case 'w': wait = true; break;
    default: return cli_usage_error("%s", "invalid finetune option");
    }
  }
  if (optind != argc) return cli_usage_error("unexpected argument %s", argv[optind]);
  if (!data || !req.output_path[0]) return cli_usage_error("%s", "finetune needs --data and --out");

  asu_dataset ds = {0};
  int rc = EXIT_CALL;
  if (load_examples(data, "data", &req.data, &req.n_data, &ds) != 0) goto done;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "StartFinetune", &req.base, &asu__v1__job__descriptor, &resp,
                       &st) != 0) {
    rc = cli_call_error(&st);
    goto done;
  }
  printf("%s\n", ((Asu__V1__Job *)resp)->id);
  fflush(stdout);
  rc = wait ? cli_watch(c, ((Asu__V1__Job *)resp)->id) : 0;
  protobuf_c_message_free_unpacked(resp, NULL);
done:
  free_examples(req.data);
  asu_dataset_free(&ds);
  return rc;
}

int cli_evaluate(asu_client *c, int argc, char **argv) {
  Asu__V1__StartEvaluationRequest req = ASU__V1__START_EVALUATION_REQUEST__INIT;
  bool wait = false;
  static const struct option opts[] = {{"tofu", required_argument, NULL, 't'},
                                       {"adapter", required_argument, NULL, 'a'},
                                       {"forget", required_argument, NULL, 'f'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"max-tokens", required_argument, NULL, 'n'},
                                       {"reference", required_argument, NULL, 'r'},
                                       {"unprotected", required_argument, NULL, 'u'},
                                       {"vocabulary", required_argument, NULL, 'v'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"wait", no_argument, NULL, 'w'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (o) {
    case 't': req.tofu_path = optarg; break;
    case 'a': req.adapter = optarg; break;
    case 'f': req.forget_split = optarg; break;
    case 'l':
      if (!cli_parse_u32(optarg, &req.limit)) return cli_usage_error("invalid --limit value: %s", optarg);
      break;
    case 'n':
      if (!cli_parse_u32(optarg, &req.max_tokens))
        return cli_usage_error("invalid --max-tokens value: %s", optarg);
      break;
    case 'r': req.reference_path = optarg; break;
    case 'u': req.unprotected_path = optarg; break;
    case 'v': req.vocabulary_path = optarg; break;
    case 'o': req.output_path = optarg; break;
    case 'w': wait = true; break;
    default: return cli_usage_error("%s", "invalid evaluate option");
    }
  }
  if (optind != argc) return cli_usage_error("unexpected argument %s", argv[optind]);
  if (!req.tofu_path[0]) return cli_usage_error("%s", "evaluate needs --tofu");

  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "StartEvaluation", &req.base, &asu__v1__job__descriptor,
                       &resp, &st) != 0)
    return cli_call_error(&st);
  char id[64];
  snprintf(id, sizeof id, "%s", ((Asu__V1__Job *)resp)->id);
  protobuf_c_message_free_unpacked(resp, NULL);
  printf("%s\n", id);
  fflush(stdout);
  int rc = wait ? cli_watch(c, id) : 0;
  return rc == 0 && wait ? cli_job(c, SERVICE "GetJob", id) : rc;
}

